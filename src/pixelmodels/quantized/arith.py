"""Exact integer primitives of the coding path (run at decode time) and the helpers that set them up.

Everything here is exact on any machine: int64 element-wise arithmetic (add, multiply, arithmetic shift, clamp,
integer division, indexing), and convolutions of integer-valued float64 tensors whose every partial sum stays
below 2**53 in magnitude (each product and each sum is then an exact integer, whatever the summation order,
blocking, FMA use or thread count). Callers prove that bound when they build a layer (``check_exact``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

#: Integer-valued float64 arithmetic is exact below this magnitude.
EXACT_FLOAT = 2**53
#: int64 intermediates stay below this (one bit of headroom below 2**63).
EXACT_INT = 2**62
#: Bits of the integer multipliers that rescale accumulators between layers (relative error < 2**-23).
MULT_BITS = 24


class BoundError(ValueError):
    """A layer could overflow exact integer arithmetic with the chosen bit widths."""


def check_exact(bound: float, what: str, limit: int = EXACT_FLOAT) -> None:
    if not bound < limit:
        raise BoundError(f"{what}: |values| may reach {bound:.3g} >= {limit:.3g}; use fewer bits")


@contextmanager
def exact_kernels():
    """cuDNN off (its FFT / Winograd convolutions do not sum products one by one); no autograd."""
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=False):
        yield


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding=0) -> torch.Tensor:
    """Exact convolution of integer tensors: int64 in, int64 out (weight / bias: integer-valued float64)."""
    return F.conv2d(x.double(), weight, bias, padding=padding).long()


def rescale(acc: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """round(acc * mult / 2**shift), halves rounded up; ``mult`` and ``shift`` (int64, >= 1) broadcast against
    ``acc`` (e.g. (C, 1, 1))."""
    return (acc * mult + (1 << (shift - 1))) >> shift


def lookup(table: torch.Tensor, x: torch.Tensor, lo: int) -> torch.Tensor:
    """``table[x - lo]``: entry i holds the function at the fixed-point input ``lo + i``; inputs beyond the table
    clamp to its ends (where the tabulated functions are flat)."""
    return torch.take(table, (x - lo).clamp_(0, table.numel() - 1))


def bit_length(x: torch.Tensor) -> torch.Tensor:
    """Number of bits of non-negative int64 values (0 for 0), by exact comparisons."""
    n = torch.zeros_like(x)
    for k in (32, 16, 8, 4, 2, 1):
        big = (x >> (n + k)) > 0
        n = n + k * big
    return n + (x > 0).long()


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum along the last axis, without relying on any kernel's tie-breaking."""
    k = x.shape[-1]
    ties = x == x.max(dim=-1, keepdim=True).values
    order = torch.arange(k, 0, -1, device=x.device)  # larger for earlier indices
    return (ties * order).argmax(dim=-1)


def frequencies_from_weights(weights: torch.Tensor, precision: int) -> torch.Tensor:
    """Non-negative integer weights (N, K) with a positive sum per row -> frequencies (N, K), each >= 1, summing
    to ``2**precision`` per row: ``1 + floor(w * (2**precision - K) / sum(w))``, the remainder to the first
    largest weight. ``weights * (2**precision - K)`` must stay below 2**63 (callers bound it)."""
    k = weights.shape[-1]
    spare = (1 << precision) - k
    total = weights.sum(dim=-1, keepdim=True)
    freqs = 1 + torch.div(weights * spare, total, rounding_mode="floor")
    left = (1 << precision) - freqs.sum(dim=-1)
    return freqs.scatter_add(-1, first_argmax(weights).unsqueeze(-1), left.unsqueeze(-1))


# ----- set-up helpers (quantization time: floats allowed, results stored as integers) --------------------------
def multiplier(ratio: np.ndarray, acc_bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer multipliers and shifts with ``mult / 2**shift ~= ratio`` (ratio > 0, per channel), such that
    ``acc_bound * mult + 2**shift`` stays below 2**62; returns (mult, shift), int64 arrays."""
    ratio = np.atleast_1d(np.asarray(ratio, dtype=np.float64))
    if not (ratio > 0).all():
        raise ValueError("rescaling ratios must be positive")
    shift = MULT_BITS - 1 - np.floor(np.log2(ratio)).astype(np.int64)
    headroom = np.floor(np.log2(EXACT_INT / (2.0 * max(acc_bound, 1.0) * ratio))).astype(np.int64)
    shift = np.clip(np.minimum(shift, headroom), 1, 62)
    mult = np.round(ratio * 2.0**shift).astype(np.int64)
    check_exact(float((acc_bound * mult.astype(np.float64) + 2.0**shift).max()), "rescaling", EXACT_INT)
    return mult, shift


def quantize_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, np.ndarray]:
    """Symmetric per-output-channel quantization: integer weight (same shape, int64) and scales (C_out,)."""
    w = weight.detach().double().cpu()
    qmax = 2 ** (bits - 1) - 1
    peak = w.reshape(w.shape[0], -1).abs().max(dim=1).values.numpy()
    scale = np.where(peak > 0, peak / qmax, 1.0)
    q = torch.round(w / torch.from_numpy(scale).view(-1, *([1] * (w.dim() - 1)))).long()
    return q, scale
