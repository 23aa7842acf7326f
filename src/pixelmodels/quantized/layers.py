"""Integer layers built from a float model's layers, stored as named integer tensors.

- ``QConv``: a convolution with integer weights and bias (kept as integer-valued float64 for exact sums);
  its output is the exact accumulator, at scale ``weight_scale[o] * input_scale`` per output channel.
- ``Rescale``: accumulator -> another fixed point (integer multiplier + shift), clamped to +-bound.

Both read and write their tensors in a flat ``dict[str, Tensor]`` under a prefix, so a model is saved as one
safetensors file; ``build_*`` functions run at quantization time (floats allowed), the classes at decode time.
"""

from __future__ import annotations

import numpy as np
import torch

from pixelmodels.quantized import arith

Store = dict[str, torch.Tensor]


def small_int(t: torch.Tensor) -> torch.Tensor:
    """Integer tensor in the narrowest of int16 / int32 / int64 that holds it (smaller files)."""
    t = t.long()
    peak = int(t.abs().max()) if t.numel() else 0
    return t.to(torch.int16 if peak < 2**15 else torch.int32 if peak < 2**31 else torch.int64)


class QConv:
    """Exact integer convolution read from ``store[prefix + ".weight" / ".bias"]``."""

    def __init__(self, store: Store, prefix: str, padding=0):
        self.weight = store[f"{prefix}.weight"].double()  # (O, I, kh, kw), integer-valued
        self.bias = store[f"{prefix}.bias"].double()  # (O,), at the accumulator scale
        self.padding = padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return arith.conv2d(x, self.weight, self.bias, self.padding)  # (B, O, H', W') int64

    def matrix(self) -> torch.Tensor:
        """A 1x1 convolution as a (O, I) matrix, for per-pixel steps."""
        return self.weight[:, :, 0, 0]

    def to(self, device) -> QConv:
        self.weight, self.bias = self.weight.to(device), self.bias.to(device)
        return self


class Rescale:
    """``clamp(round(acc * mult[c] / 2**shift), -bound, bound)`` with ``c`` on axis ``dim``."""

    def __init__(self, store: Store, prefix: str):
        self.mult = store[f"{prefix}.mult"].long()  # (O,)
        self.shift = store[f"{prefix}.shift"].long()  # (O,)
        self.bound = store[f"{prefix}.bound"].long()  # () or (O,)

    def __call__(self, acc: torch.Tensor, dim: int = 1) -> torch.Tensor:
        shape = [1] * acc.dim()
        shape[dim] = -1
        mult, shift, bound = (t.view(shape) if t.numel() > 1 else t.reshape(()) for t in self.tensors())
        out = arith.rescale(acc, mult, shift)
        return torch.minimum(torch.maximum(out, -bound), bound)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.mult, self.shift, self.bound

    def to(self, device) -> Rescale:
        self.mult, self.shift, self.bound = (t.to(device) for t in self.tensors())
        return self


# ----- quantization time ----------------------------------------------------------------------------------------
def build_conv(
    store: Store,
    prefix: str,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_scale: float,
    in_bound: float,
    bits: int,
) -> tuple[np.ndarray, float]:
    """Quantize a (masked) float kernel for integer inputs of scale ``in_scale`` and |value| <= ``in_bound``.

    Writes ``prefix.weight`` / ``prefix.bias``; returns the accumulator scale per output channel and a bound on
    |accumulator| (checked below 2**53, so the float64 convolution is exact).
    """
    q, w_scale = arith.quantize_weight(weight, bits)
    acc_scale = w_scale * in_scale  # (O,)
    b = np.zeros(q.shape[0]) if bias is None else bias.detach().double().cpu().numpy()
    q_bias = np.round(b / acc_scale)
    fan = q.reshape(q.shape[0], -1).abs().sum(dim=1).double().numpy()  # (O,)
    acc_bound = float((fan * in_bound + np.abs(q_bias)).max())
    arith.check_exact(acc_bound, prefix)
    store[f"{prefix}.weight"] = small_int(q)
    store[f"{prefix}.bias"] = torch.from_numpy(q_bias).long()
    return acc_scale, acc_bound


def build_rescale(store: Store, prefix: str, acc_scale, acc_bound: float, out_scale, bound) -> None:
    """Rescaling from accumulators of scale ``acc_scale`` (per channel) to ``out_scale`` (scalar or per
    channel), clamped to +-bound (scalar or per channel)."""
    ratio = np.atleast_1d(np.asarray(acc_scale, dtype=np.float64) / np.asarray(out_scale, dtype=np.float64))
    mult, shift = arith.multiplier(ratio, acc_bound)
    store[f"{prefix}.mult"] = torch.from_numpy(mult)
    store[f"{prefix}.shift"] = torch.from_numpy(shift)
    store[f"{prefix}.bound"] = torch.from_numpy(np.asarray(bound, dtype=np.int64))


def act_scale(peak: float, bits: int) -> tuple[float, int]:
    """Scale and integer bound of an activation whose calibrated |max| is ``peak`` (with 25% headroom)."""
    qmax = 2 ** (bits - 1) - 1
    return max(1.25 * float(peak), 1e-6) / qmax, qmax
