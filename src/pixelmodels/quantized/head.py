"""Integer output distributions: parameters in fixed point -> frequency tables summing to ``2**precision``.

- ``IntCategorical``: logits (``logit_frac`` bits) -> ``exp(l - max l)`` by table -> frequencies by exact
  integer division (``arith.frequencies_from_weights``).
- ``IntDMoL``: the discretized mixture of logistics of ``pixelmodels.heads.DiscretizedMixLogisticHead`` with
  its linear dependence on the earlier channels of the pixel. Per component the logistic CDF is looked up at
  the K-1 bin edges (``t = (edge - mean) * inv_scale`` in fixed point); the first and last bins reach to
  -inf / +inf, so each component's bin masses sum to exactly ``2**cdf_bits``. Mixture weights are the exp
  table of the logits; for channel c they are multiplied by each component's mass of the earlier channels'
  values (the component posterior, renormalized to 30 bits after every channel).

``param_formats`` (quantization time) gives the scale and clamp of every parameter channel, which the model's
last convolution rescales its accumulators to.
"""

from __future__ import annotations

import numpy as np
import torch

from pixelmodels.heads import LOG_SCALE_MIN
from pixelmodels.quantized import arith
from pixelmodels.quantized.tables import Formats, Tables

#: Rows of (pixel, edge, component) work per chunk of the DMoL tables (bounds the memory of teacher forcing).
CHUNK_ELEMENTS = 1 << 18
#: The component posterior is renormalized to this many bits after each channel, and cut to MIX_BITS to weight
#: the components' CDFs (MIX_BITS + cdf_bits + log2 M stays below 53).
POSTERIOR_BITS = 30
MIX_BITS = 20
#: Mixture numerators are cut to this many bits before multiplying by the table budget (2**precision - K).
WEIGHT_BITS = 38


class IntCategorical:
    def __init__(self, tables: Tables, num_channels: int, num_levels: int, precision: int):
        self.tables, self.c, self.k, self.precision = tables, num_channels, num_levels, precision

    @staticmethod
    def param_formats(fmt: Formats, num_channels: int, num_levels: int, peaks: np.ndarray):
        scale = np.full(num_channels * num_levels, 2.0**-fmt.logit_frac)
        return scale, _bound(peaks, fmt.logit_frac)

    def tables_at(self, params: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
        """params (N, P) int64, x (N, C) the pixel's values (only channels < c are read) -> (N, K)."""
        logits = params[:, c * self.k : (c + 1) * self.k]  # (N, K)
        weights = self.tables.exp(logits - logits.max(dim=-1, keepdim=True).values)
        return arith.frequencies_from_weights(weights, self.precision)


class IntDMoL:
    def __init__(
        self,
        tables: Tables,
        num_channels: int,
        num_levels: int,
        precision: int,
        num_mixtures: int,
        components: int | None = None,
    ):
        self.tables, self.c, self.k, self.precision, self.m = tables, num_channels, num_levels, precision, num_mixtures
        # the table of a sub-pixel mixes its `components` most probable components (all by default: the exact
        # mixture); fewer make the K-1 x M CDF lookups, the bulk of the work, proportionally cheaper
        self.components = min(components or num_mixtures, num_mixtures)
        fmt = tables.fmt
        if num_mixtures * 2.0 ** (MIX_BITS + fmt.cdf_bits) >= arith.EXACT_FLOAT:  # the float64 mixture sums
            raise arith.BoundError(f"{num_mixtures} mixture components overflow the integer mixture sums")
        self.pairs = [(c, j) for c in range(num_channels) for j in range(c)]  # the head's (1,0), (2,0), (2,1)...
        self.t_shift = fmt.mean_frac + tables.inv_bits - fmt.cdf_frac
        # t -> table index: + cdf_range (the table starts there), + half a step (round to the nearest entry)
        self.t_offset = (fmt.cdf_range << (fmt.cdf_frac + self.t_shift)) + (1 << (self.t_shift - 1))
        self.mean_bound = fmt.mean_range * (num_levels - 1) << fmt.mean_frac
        self.one = 1 << fmt.cdf_bits
        device = tables.t["cdf"].device
        edges = torch.arange(2 - num_levels, num_levels - 1, 2, device=device)  # (K-1,): edge v | v+1 = 2v+2-K
        self.edges = (edges << fmt.mean_frac).view(1, -1, 1)

    @staticmethod
    def param_formats(fmt: Formats, num_channels: int, num_levels: int, peaks: np.ndarray, num_mixtures: int):
        c, m = num_channels, num_mixtures
        mean_scale = 2.0**-fmt.mean_frac / (num_levels - 1)  # means in half-bin units
        scale = np.concatenate(
            [
                np.full(m, 2.0**-fmt.logit_frac),
                np.full(c * m, mean_scale),
                np.full(c * m, 2.0**-fmt.log_scale_frac),
                np.full(c * (c - 1) // 2 * m, 2.0**-fmt.pre_frac),
            ]
        )
        bound = np.concatenate(
            [
                _bound(peaks[:m], fmt.logit_frac),
                np.full(c * m, fmt.mean_range * (num_levels - 1) << fmt.mean_frac),
                np.full(c * m, max(-int(LOG_SCALE_MIN), fmt.log_scale_max) << fmt.log_scale_frac),
                np.full(c * (c - 1) // 2 * m, fmt.gate_range << fmt.pre_frac),
            ]
        )
        return scale, bound

    # ----- pieces -----------------------------------------------------------------------------------------
    def _split(self, params: torch.Tensor):
        n, c, m = params.shape[0], self.c, self.m
        logits = params[:, :m]
        means = params[:, m : m + c * m].reshape(n, c, m)
        log_scales = params[:, m + c * m : m + 2 * c * m].reshape(n, c, m)
        coeffs = params[:, m + 2 * c * m :].reshape(n, -1, m)
        return logits, means, log_scales, coeffs

    def _mean(self, means, coeffs, x: torch.Tensor, c: int) -> torch.Tensor:
        """Channel c's means (N, M) in half-bin units, shifted by tanh(coeff) * earlier values."""
        fmt = self.tables.fmt
        mean = means[:, c]
        for p, (row, j) in enumerate(self.pairs):
            if row == c:
                centred = (2 * x[:, j] - (self.k - 1)).unsqueeze(-1)  # (N, 1), half-bin units
                mean = mean + ((self.tables.tanh(coeffs[:, p]) * centred) >> (fmt.gate_out - fmt.mean_frac))
        return mean.clamp(-self.mean_bound, self.mean_bound)

    def _cdf(self, edges: torch.Tensor, mean: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Logistic CDF (``cdf_bits``) at edges (``mean_frac`` fixed point, half-bin units; broadcasting)."""
        # (edge - mean) * inv_scale with mean_frac + inv_bits fractional bits, plus the table offset, in one pass
        t = torch.addcmul(self.t_offset - mean * inv, edges, inv)
        t >>= self.t_shift
        return self.tables.cdf_at(t)

    def _mass(self, v: torch.Tensor, mean: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Mass (N, M) of value v (N, 1) under each component."""
        frac = self.tables.fmt.mean_frac
        upper = torch.where(v == self.k - 1, self.one, self._cdf((2 * v + 2 - self.k) << frac, mean, inv))
        lower = torch.where(v == 0, 0, self._cdf((2 * v - self.k) << frac, mean, inv))
        return upper - lower

    def tables_at(self, params: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
        """params (N, P) int64, x (N, C) the pixel's values (only channels < c are read) -> (N, K)."""
        rows = max(1, CHUNK_ELEMENTS // (self.k * self.m))
        if params.shape[0] > rows:
            return torch.cat([self.tables_at(p, v, c) for p, v in zip(params.split(rows), x.split(rows), strict=True)])
        logits, means, log_scales, coeffs = self._split(params)
        post = self.tables.exp(logits - logits.max(dim=-1, keepdim=True).values)  # (N, M), max exactly 2**30
        for j in range(c):
            mass = self._mass(x[:, j : j + 1], self._mean(means, coeffs, x, j), self.tables.inv_scale(log_scales[:, j]))
            q = post * (mass + 1)  # +1: a component with no mass left keeps a little weight
            top = arith.bit_length(q.max(dim=-1, keepdim=True).values)
            post = q >> (top - POSTERIOR_BITS).clamp(min=0)
        post = post >> (POSTERIOR_BITS - MIX_BITS)  # (N, M), the largest in [2**19, 2**20)
        mean, inv = self._mean(means, coeffs, x, c), self.tables.inv_scale(log_scales[:, c])  # (N, M)
        if self.components < self.m:  # the most probable components; ties go to the lower index (unique keys)
            keys = post * self.m + torch.arange(self.m - 1, -1, -1, device=post.device)
            top = keys.topk(self.components, dim=-1).indices  # (N, k)
            post, mean, inv = post.gather(1, top), mean.gather(1, top), inv.gather(1, top)
        cdf = self._cdf(self.edges, mean.unsqueeze(1), inv.unsqueeze(1))  # (N, K-1, M) int32
        # the mixture's CDF at every edge (N, K-1): a float64 matrix product of integers below 2**53, exact
        mixture = torch.bmm(cdf.double(), post.double().unsqueeze(-1)).squeeze(-1).long()
        total = post.sum(dim=-1, keepdim=True) << self.tables.fmt.cdf_bits  # (N, 1): its CDF at +inf
        weights = torch.diff(mixture, dim=1, prepend=torch.zeros_like(total), append=total)  # (N, K)
        cut = (arith.bit_length(total) - WEIGHT_BITS).clamp(min=0)
        return arith.frequencies_from_weights(weights >> cut, self.precision)


def _bound(peaks: np.ndarray, frac: int) -> np.ndarray:
    """Clamp bounds (fixed point) from calibrated |max| values, 50% headroom, at least 8."""
    return np.ceil(np.maximum(1.5 * np.asarray(peaks, dtype=np.float64), 8.0) * 2.0**frac).astype(np.int64)
