"""Integer lookup tables for the nonlinearities, and the fixed-point formats they read and write.

Tables are computed once, at quantization time (float64 numpy), rounded to integers and stored with the model
(int32); decoding only indexes them (``arith.lookup``), so libm or torch float kernels never enter the coding
path. Each table holds the function at every fixed-point input of its range (no interpolation).

Formats (``Formats``; a value ``v`` with ``f`` fractional bits is the integer ``round(v * 2**f)``):

- gate pre-activations and DMoL coefficients: ``pre_frac`` bits, tables over +-``gate_range`` (tanh and sigmoid
  are flat to 1e-13 beyond 16); outputs with ``gate_out`` bits;
- logits: ``logit_frac`` bits; ``exp`` over [-``exp_range``, 0] with ``exp_bits`` bits out (softmax weights);
- logistic CDF (DMoL): inputs with ``cdf_frac`` bits over +-``cdf_range``
  (sigmoid(-20) ~ 2e-9, below the coder's resolution), outputs with ``cdf_bits`` bits;
- DMoL log-scales: ``log_scale_frac`` bits in [``LOG_SCALE_MIN``, ``log_scale_max``]; the table holds
  ``2**inv_bits / ((K - 1) * exp(log_scale))``, the logistic's inverse scale in half-bin units;
- DMoL means: ``mean_frac`` bits, in half-bin units (``(K - 1) * mean`` on the model's [-1, 1] scale).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pixelmodels.heads import LOG_SCALE_MIN
from pixelmodels.quantized import arith


@dataclass(frozen=True)
class Formats:
    pre_frac: int = 12
    gate_range: int = 16
    gate_out: int = 15
    logit_frac: int = 12
    exp_range: int = 32
    exp_bits: int = 30
    cdf_frac: int = 12
    cdf_range: int = 20
    cdf_bits: int = 28
    log_scale_frac: int = 8
    log_scale_max: int = 7
    mean_frac: int = 10
    mean_range: int = 8  # means clamp to +-8 on the [-1, 1] scale (every bin is then in the far tail)

    def to_dict(self) -> dict:
        return asdict(self)


def _table(fn, lo: int, hi: int, frac: int, out_bits: int) -> torch.Tensor:
    """round(fn(x) * 2**out_bits) at every x = lo, lo + 2**-frac, ..., hi (real units), int32."""
    x = lo + np.arange(((hi - lo) << frac) + 1) / 2.0**frac
    return torch.from_numpy(np.round(fn(x) * 2.0**out_bits).astype(np.int32))


def inv_scale_bits(num_levels: int, fmt: Formats) -> int:
    """Fractional bits of the inverse-scale table: as many as keep ``(edge - mean) * inv_scale`` below 2**62."""
    diff = (fmt.mean_range + 1) * (num_levels - 1) * 2 ** (fmt.mean_frac + 1)
    peak = math.exp(-LOG_SCALE_MIN) / (num_levels - 1)
    return 61 - math.ceil(math.log2(diff)) - math.ceil(math.log2(peak + 1))


def build_tables(fmt: Formats, num_levels: int) -> dict[str, torch.Tensor]:
    """Every table a model may use, keyed ``tables.<name>``."""
    g, e, c = fmt.gate_range, fmt.exp_range, fmt.cdf_range
    log_scales = LOG_SCALE_MIN + np.arange((fmt.log_scale_max - LOG_SCALE_MIN) * 2**fmt.log_scale_frac + 1) / (
        2.0**fmt.log_scale_frac
    )
    inv = np.round(2.0 ** inv_scale_bits(num_levels, fmt) / ((num_levels - 1) * np.exp(log_scales)))
    tables = {
        "tanh": _table(np.tanh, -g, g, fmt.pre_frac, fmt.gate_out),
        "sigmoid": _table(lambda x: 1 / (1 + np.exp(-x)), -g, g, fmt.pre_frac, fmt.gate_out),
        "exp": _table(np.exp, -e, 0, fmt.logit_frac, fmt.exp_bits),
        "cdf": _table(lambda x: 1 / (1 + np.exp(-x)), -c, c, fmt.cdf_frac, fmt.cdf_bits),
        "inv_scale": torch.from_numpy(inv.astype(np.int64)),
    }
    return {f"tables.{k}": v for k, v in tables.items()}


class Tables:
    """The stored tables and their formats, at decode time."""

    def __init__(self, store: dict[str, torch.Tensor], fmt: Formats, num_levels: int):
        self.fmt = fmt
        # int32 (narrow tables gather faster); the inverse scales need int64
        self.t = {k.split(".", 1)[1]: v for k, v in store.items() if k.startswith("tables.")}
        self.t = {k: v.long() if k == "inv_scale" else v.int() for k, v in self.t.items()}
        self.inv_bits = inv_scale_bits(num_levels, fmt)

    def to(self, device) -> Tables:
        self.t = {k: v.to(device) for k, v in self.t.items()}
        return self

    def tanh(self, x: torch.Tensor) -> torch.Tensor:
        """tanh, ``pre_frac`` bits in, ``gate_out`` bits out (int32)."""
        return arith.lookup(self.t["tanh"], x, -self.fmt.gate_range << self.fmt.pre_frac)

    def sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return arith.lookup(self.t["sigmoid"], x, -self.fmt.gate_range << self.fmt.pre_frac)

    def gate(self, pre: torch.Tensor) -> torch.Tensor:
        """tanh(f) * sigmoid(g) of the two halves of dim 1, with ``gate_out`` fractional bits (int64)."""
        f, g = pre.chunk(2, dim=1)
        return (self.tanh(f).long() * self.sigmoid(g) + (1 << (self.fmt.gate_out - 1))) >> self.fmt.gate_out

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        """exp(x) for x <= 0, ``logit_frac`` bits in, ``exp_bits`` out (int64)."""
        return arith.lookup(self.t["exp"], x, -self.fmt.exp_range << self.fmt.logit_frac).long()

    def cdf_at(self, index: torch.Tensor) -> torch.Tensor:
        """The logistic CDF at table entries ``index`` (input ``-cdf_range + index * 2**-cdf_frac``; clamped):
        a direct lookup, no interpolation, as it runs K-1 times per component and sub-pixel."""
        table = self.t["cdf"]
        return torch.take(table, index.clamp_(0, table.numel() - 1))  # in place: the index is K-1 x M per row

    def inv_scale(self, log_scale: torch.Tensor) -> torch.Tensor:
        """Inverse scale (``inv_bits`` fractional bits, half-bin units) of log-scales with ``log_scale_frac``
        bits; log-scales clamp to [LOG_SCALE_MIN, log_scale_max] (the float head's floor, and a flat top)."""
        f = self.fmt
        idx = (log_scale - (int(LOG_SCALE_MIN) << f.log_scale_frac)).clamp(0, self.t["inv_scale"].numel() - 1)
        return self.t["inv_scale"][idx]
