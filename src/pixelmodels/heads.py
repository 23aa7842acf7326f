"""Output distributions: network parameters -> per-sub-pixel log-probabilities and samples.

A head owns the ``P`` parameter channels a network emits per pixel, laid out as ``(B, P, H, W)``.

- ``log_prob(params, x) -> (B, C, H, W)``: log p of every sub-pixel given its parameters (and, for heads that
  couple the channels of a pixel, the earlier channels' values).
- ``sample(params, x, channels, keep) -> (B, C)``: draw the listed channels of one pixel, in order, from that
  pixel's parameters ``(B, P)``; earlier channels are read from ``x`` (the pixel's current values), and
  channels where ``keep`` (B, C) is True keep their value from ``x`` (image completion).
- ``param_indices(c)``: which parameter channels the distribution of colour ``c`` reads (the causality test
  checks exactly these).
- ``channel_log_probs(params, x, channel) -> (B, K)``: log p of every value of one channel of a pixel, given the
  pixel's parameters ``(B, P)`` and the earlier channels' values in ``x`` (B, C); the codec and tests use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def gumbel_noise(u: torch.Tensor) -> torch.Tensor:
    """Uniform draws -> standard Gumbel noise, -log(-log u) (clamped so both logs stay finite)."""
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample from softmax(logits) over the last axis with explicit uniform noise (reproducible per seed)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    return torch.argmax(logits.float() + gumbel_noise(u), dim=-1)


class Head(nn.Module):
    """Interface shared by all output distributions."""

    num_params: int
    #: True when the channels of a pixel are drawn jointly from one parameter vector (the network may then not
    #: see any channel of the current pixel); False when each sub-pixel has its own, channel-masked parameters.
    joint_channels: bool = False

    def __init__(self, num_channels: int, num_levels: int):
        super().__init__()
        self.num_channels = num_channels
        self.num_levels = num_levels

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        channels: Sequence[int],
        keep: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        noise: list[tuple[torch.Tensor, ...]] | None = None,
    ) -> torch.Tensor:
        """``noise``: draws made ahead, ``prepare_noise(noise(...))``, used instead of drawing from ``generator``."""
        raise NotImplementedError

    def noise_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per channel drawn, the per-pixel shapes of the uniform tensors ``sample`` draws, in its order."""
        raise NotImplementedError

    def noise(self, n: int, channels: Sequence[int], generator=None, device=None) -> list[tuple[torch.Tensor, ...]]:
        """The uniform draws ``sample`` makes for ``n`` pixels and these channels, in the order it makes them: one
        tuple of float32 tensors (n, *shape) per channel. Drawn ahead of time they let a sampler fix the
        randomness of every step (the fixed-point sampler) and still match ancestral sampling seed for seed."""
        shapes = self.noise_shapes()
        return [
            tuple(torch.rand(n, *shape, generator=generator, device=device, dtype=torch.float32) for shape in shapes)
            for _ in channels
        ]

    def prepare_noise(self, noise: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
        """Uniform draws (``noise``) -> the form ``sample`` consumes (e.g. Gumbel noise), computed once."""
        return noise

    def param_indices(self, channel: int) -> list[int]:
        raise NotImplementedError

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        raise NotImplementedError


class CategoricalHead(Head):
    """A K-way softmax per sub-pixel (PixelRNN paper, section 5.3). Parameters: logits, colour-major (C*K)."""

    def __init__(self, num_channels: int, num_levels: int):
        super().__init__(num_channels, num_levels)
        self.num_params = num_channels * num_levels

    def logits(self, params: torch.Tensor) -> torch.Tensor:
        b, _, h, w = params.shape
        return params.view(b, self.num_channels, self.num_levels, h, w)  # (B, C, K, H, W)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(self.logits(params).float(), dim=2)
        return logp.gather(2, x.long().unsqueeze(2)).squeeze(2)  # (B, C, H, W)

    def noise_shapes(self):
        return ((self.num_levels,),)  # Gumbel noise over the K values

    def prepare_noise(self, noise):
        return [(gumbel_noise(u),) for (u,) in noise]

    def sample(self, params, x, channels, keep=None, temperature=1.0, generator=None, noise=None):
        out = x.clone()
        logits = params.view(params.shape[0], self.num_channels, self.num_levels)  # (B, C, K)
        if noise is None:
            noise = self.prepare_noise(self.noise(params.shape[0], channels, generator, params.device))
        for c, (gumbel,) in zip(channels, noise, strict=True):
            drawn = torch.argmax(logits[:, c].float() / temperature + gumbel, dim=-1)
            out[:, c] = drawn if keep is None else torch.where(keep[:, c], x[:, c], drawn)
        return out

    def param_indices(self, channel: int) -> list[int]:
        k = self.num_levels
        return list(range(channel * k, (channel + 1) * k))

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        logits = params.view(params.shape[0], self.num_channels, self.num_levels)  # (B, C, K)
        return F.log_softmax(logits[:, channel].float(), dim=-1)  # (B, K)


# ----- discretized mixture of logistics (PixelCNN++, Salimans et al. 2017, section 2.1 and 2.2) ---------------

#: Mixture components of the CIFAR-10 model (openai/pixel-cnn ``train.py``: ``--nr_logistic_mix 10``).
DEFAULT_NUM_MIXTURES = 10
#: Floor on log s (openai/pixel-cnn): scale >= e^-7 ~ 0.0009, about a ninth of a bin at K=256 (bins are 2/255
#: wide), so one bin can take almost all the mass while 1/s stays finite.
LOG_SCALE_MIN = -7.0
#: Uniform draws for the logistic inverse CDF stay in [eps, 1 - eps]: float32 resolution, so the truncated tail
#: mass (< 1e-7) is below anything a test or a sample can see.
UNIFORM_EPS = 1e-7


def dmol_num_params(num_channels: int, num_mixtures: int) -> int:
    """Parameters per pixel of a DMoL head: per component one mixture logit, a mean and a log-scale per channel,
    and one coefficient per pair (earlier channel j, later channel c): 10 per component for RGB, 3 for gray."""
    return num_mixtures * (1 + 2 * num_channels + num_channels * (num_channels - 1) // 2)


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-a)) for a > 0, accurate for small and large a (Maechler 2012, "Accurately computing ...").

    Each branch of the ``where`` gets only inputs where it is finite: ``torch.where`` multiplies the gradient of
    the branch it does not pick by 0, and 0 * inf (``log1p(-exp(-a))`` at a ~ 1e-8) would be NaN.
    """
    small = a < math.log(2.0)
    a_small = torch.where(small, a, torch.ones_like(a))
    a_large = torch.where(small, torch.ones_like(a), a)
    return torch.where(small, torch.log(-torch.expm1(-a_small)), torch.log1p(-torch.exp(-a_large)))


class DiscretizedMixLogisticHead(Head):
    """Discretized mixture of logistics over the K levels of each sub-pixel, channels coupled linearly.

    Each component m of the mixture gives every channel c a logistic distribution with log-scale ``log s_mc``
    and a mean that depends linearly on the earlier channels of the same pixel (PixelCNN++ section 2.2, for RGB
    ``mu_G + a R``, ``mu_B + b R + c G``; here ``mu_c + sum_{j<c} tanh(coeff_cj) x_j`` for any C). Value v of
    a channel is the bin ``[x_v - 1/(K-1), x_v + 1/(K-1)]`` around ``x_v = 2v/(K-1) - 1`` on the [-1, 1]
    scale; the first and last bins extend to -inf and +inf (section 2.1), so the bins of a channel partition
    the real line and every component, hence the mixture, sums to exactly 1 over the K^C values of a pixel.

    Parameter layout per pixel (``P = dmol_num_params(C, M)``): M mixture logits, then C*M means, C*M
    log-scales and C(C-1)/2*M coefficients, each block channel-major (index ``c * M + m``), coefficient pairs
    in the order (1,0), (2,0), (2,1), ...

    ``log_prob`` returns, for each sub-pixel, the chain-rule conditional ``log p(x_c | x_<c)`` of the pixel's
    joint mixture (the component posterior given the earlier channels weights channel c), so the C entries of
    a pixel add up to its joint log-probability.

    Args:
        num_channels: C.
        num_levels: K (>= 2).
        num_mixtures: M, mixture components.
    """

    joint_channels = True

    def __init__(self, num_channels: int, num_levels: int, num_mixtures: int = DEFAULT_NUM_MIXTURES):
        super().__init__(num_channels, num_levels)
        if num_mixtures < 1:
            raise ValueError(f"num_mixtures must be >= 1, got {num_mixtures}")
        self.num_mixtures = num_mixtures
        self.num_params = dmol_num_params(num_channels, num_mixtures)
        rows, cols = torch.tril_indices(num_channels, num_channels, offset=-1)
        self.register_buffer("_pair_rows", rows, persistent=False)  # later channel c of each coefficient
        self.register_buffer("_pair_cols", cols, persistent=False)  # earlier channel j

    # ----- the parameters of one pixel ---------------------------------------------------------------------
    def mixture(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unpack ``params`` (N, P) given the pixel values ``x`` (N, C).

        Returns the log mixture weights (N, M), the means (N, C, M) already shifted by the earlier channels of
        ``x`` (channel c's mean reads only ``x[:, :c]``), and the floored log-scales (N, C, M).
        """
        n, c, m = params.shape[0], self.num_channels, self.num_mixtures
        log_weights = F.log_softmax(params[:, :m], dim=-1)  # (N, M)
        means = params[:, m : m + c * m].reshape(n, c, m)  # (N, C, M)
        log_scales = params[:, m + c * m : m + 2 * c * m].reshape(n, c, m).clamp(min=LOG_SCALE_MIN)  # (N, C, M)
        if c > 1:
            coeffs = torch.tanh(params[:, m + 2 * c * m :].reshape(n, -1, m))  # (N, C(C-1)/2, M)
            mixing = params.new_zeros(n, c, c, m)  # (N, C, C, M), strictly lower triangular in (c, j)
            mixing[:, self._pair_rows, self._pair_cols] = coeffs
            means = means + torch.einsum("ncjm,nj->ncm", mixing, self.centre(x, params.dtype))
        return log_weights, means, log_scales

    def centre(self, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Value v in [0, K) -> the centre of its bin on the [-1, 1] scale (the model's input scaling)."""
        return v.to(dtype) * (2.0 / (self.num_levels - 1)) - 1.0

    def bin_log_prob(self, v: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
        """log P(value v) under logistics (means, exp(log_scales)); broadcasts v (long) against the others.

        Mirrors openai/pixel-cnn ``discretized_mix_logistic_loss`` case by case.
        """
        k = self.num_levels
        half_width = 1.0 / (k - 1)  # bins are 2/(K-1) wide on the [-1, 1] scale
        centred = self.centre(v, means.dtype) - means
        inv_scale = torch.exp(-log_scales)
        plus_in = inv_scale * (centred + half_width)
        min_in = inv_scale * (centred - half_width)
        # v = 0: the bin reaches -inf, P = sigmoid(plus_in).
        log_cdf_plus = F.logsigmoid(plus_in)
        # v = K-1: the bin reaches +inf, P = 1 - sigmoid(min_in) = sigmoid(-min_in).
        log_one_minus_cdf_min = F.logsigmoid(-min_in)
        # Interior bins: sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)), evaluated in log
        # space. openai/pixel-cnn subtracts the two sigmoids and, where the difference falls below 1e-5 (the
        # tails, where the subtraction cancels), switches to the density at the bin centre times the bin width.
        # The log-space identity stays exact in the tails; only a bin narrower than the smallest float in logistic
        # units (log-scale > ~80) still needs that fallback, and there the density is flat across the bin.
        # 2/(K-1)/s directly, not plus_in - min_in: with a mean far from the bin and a large scale, the gradient of
        # that difference is inf - inf (K=2 drifts there: its likelihood depends only on mean/s).
        bin_width = inv_scale * (2.0 * half_width)
        tiny = torch.finfo(bin_width.dtype).tiny
        log_delta = log_cdf_plus + log_one_minus_cdf_min + log1mexp(bin_width.clamp(min=tiny))
        mid_in = inv_scale * centred
        log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
        log_mid_approx = log_pdf_mid + math.log(2.0 * half_width)
        interior = torch.where(bin_width > tiny, log_delta, log_mid_approx)
        return torch.where(v == 0, log_cdf_plus, torch.where(v == k - 1, log_one_minus_cdf_min, interior))

    def component_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log mixture weights (N, M) and log p_m(x_c | x_<c) of each component and channel (N, C, M)."""
        log_weights, means, log_scales = self.mixture(params, x)
        return log_weights, self.bin_log_prob(x.unsqueeze(-1), means, log_scales)

    # ----- the head interface --------------------------------------------------------------------------------
    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, p, h, w = params.shape
        c = self.num_channels
        flat_params = params.permute(0, 2, 3, 1).reshape(-1, p)  # (N, P), N = B*H*W
        flat_x = x.long().permute(0, 2, 3, 1).reshape(-1, c)  # (N, C)
        log_weights, per_component = self.component_log_probs(flat_params, flat_x)  # (N, M), (N, C, M)
        # log p(x_<=c) for c = 0..C-1 (log-sum-exp over the components), then the chain-rule conditionals
        log_prefix = torch.logsumexp(log_weights.unsqueeze(1) + per_component.cumsum(dim=1), dim=-1)  # (N, C)
        previous = F.pad(log_prefix[:, :-1], (1, 0))  # log p(empty prefix) = 0
        return (log_prefix - previous).view(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        """All K values at once from the K-1 bin edges: one log-sigmoid per edge instead of a full ``bin_log_prob``
        per value (the codec calls this for every pixel); the identity and the edge bins are the same."""
        k = self.num_levels
        log_weights, means, log_scales = self.mixture(params, x.long())
        log_posterior = log_weights + self.bin_log_prob(
            x[:, :channel].long().unsqueeze(-1), means[:, :channel], log_scales[:, :channel]
        ).sum(dim=1)  # (B, M): component posterior given the earlier channels (unnormalized)
        log_posterior = log_posterior - torch.logsumexp(log_posterior, dim=-1, keepdim=True)
        mean, log_scale = means[:, None, channel], log_scales[:, None, channel]  # (B, 1, M)
        inv_scale = torch.exp(-log_scale)
        edges = self.centre(torch.arange(k - 1, device=params.device), params.dtype) + 1.0 / (k - 1)  # (K-1,)
        edge_in = inv_scale * (edges.view(1, -1, 1) - mean)  # (B, K-1, M)
        log_cdf = F.logsigmoid(edge_in)  # log P(X < edge)
        log_sf = log_cdf - edge_in  # log P(X > edge) = log sigmoid(-edge_in)
        bin_width = inv_scale * (2.0 / (k - 1))  # (B, 1, M)
        tiny = torch.finfo(bin_width.dtype).tiny
        interior = log_cdf[:, 1:] + log_sf[:, :-1] + log1mexp(bin_width.clamp(min=tiny))  # (B, K-2, M)
        per_value = torch.cat([log_cdf[:, :1], interior, log_sf[:, -1:]], dim=1)  # (B, K, M)
        if not (bin_width > tiny).all():  # the underflow fallback, exactly as in bin_log_prob
            values = torch.arange(k, device=params.device).view(1, -1, 1)
            per_value = torch.where(bin_width > tiny, per_value, self.bin_log_prob(values, mean, log_scale))
        return torch.logsumexp(log_posterior.unsqueeze(1) + per_value, dim=-1)  # (B, K)

    def noise_shapes(self):
        return ((self.num_mixtures,), ())  # Gumbel noise for the component, then the logistic draw

    def prepare_noise(self, noise):
        """Gumbel noise for the component; a standard logistic draw log(u) - log(1 - u) by the inverse CDF."""
        prepared = []
        for u_component, u in noise:
            u = u.clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS)
            prepared.append((gumbel_noise(u_component), torch.log(u) - torch.log1p(-u)))
        return prepared

    def sample(self, params, x, channels, keep=None, temperature=1.0, generator=None, noise=None):
        """Draw the channels in order, mirroring ``bin_log_prob`` (openai ``sample_from_discretized_mix_logistic``):
        a component from its posterior given the pixel's earlier channels, a logistic draw by the inverse CDF,
        then the bin it falls in (values beyond the edge bins clip to 0 or K-1, exactly the edge bins' mass).

        ``temperature`` divides the component log-weights and multiplies the logistic scales; 1.0 is exact.
        """
        out = x.clone()
        k = self.num_levels
        if noise is None:
            noise = self.prepare_noise(self.noise(params.shape[0], channels, generator, params.device))
        for c, (gumbel, logistic) in zip(channels, noise, strict=True):
            log_weights, means, log_scales = self.mixture(params, out)  # means of channel c read out[:, :c]
            log_posterior = log_weights + self.bin_log_prob(
                out[:, :c].unsqueeze(-1), means[:, :c], log_scales[:, :c]
            ).sum(dim=1)  # (B, M)
            component = torch.argmax(log_posterior.float() / temperature + gumbel, dim=-1).unsqueeze(-1)  # (B, 1)
            mean = means[:, c].gather(1, component).squeeze(1)  # (B,)
            scale = torch.exp(log_scales[:, c].gather(1, component).squeeze(1)) * temperature  # (B,)
            y = mean + scale * logistic.to(mean.dtype)  # a logistic draw on the [-1, 1] scale
            drawn = torch.floor((y + 1.0) * ((k - 1) / 2.0) + 0.5).clamp(0, k - 1).long()
            out[:, c] = drawn if keep is None else torch.where(keep[:, c], x[:, c], drawn)
        return out

    def param_indices(self, channel: int) -> list[int]:
        """Channel c's conditional reads the mixture logits and the means, log-scales and coefficients of channels
        0..c (the earlier ones through the component posterior)."""
        c, m = self.num_channels, self.num_mixtures
        upto = (channel + 1) * m
        pairs = [i for i, row in enumerate(self._pair_rows.tolist()) if row <= channel]
        return (
            list(range(m))
            + list(range(m, m + upto))
            + list(range(m + c * m, m + c * m + upto))
            + [m + 2 * c * m + i * m + j for i in pairs for j in range(m)]
        )


HEADS: dict[str, type[Head]] = {"categorical": CategoricalHead, "dmol": DiscretizedMixLogisticHead}


def build_head(name: str, num_channels: int, num_levels: int, **kwargs) -> Head:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; available: {', '.join(sorted(HEADS))}")
    return HEADS[name](num_channels, num_levels, **kwargs)
