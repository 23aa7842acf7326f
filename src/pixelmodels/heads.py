"""Output distributions: network parameters -> per-sub-pixel log-probabilities and samples.

A head owns the ``P`` parameter channels a network emits per pixel, laid out as ``(B, P, H, W)``.

- ``log_prob(params, x) -> (B, C, H, W)``: log p of every sub-pixel given its parameters (and, for heads that
  couple the channels of a pixel, the earlier channels' values).
- ``sample(params, x, channels, keep) -> (B, C)``: draw the listed channels of one pixel, in order, from that
  pixel's parameters ``(B, P)``; earlier channels are read from ``x`` (the pixel's current values), and
  channels where ``keep`` (B, C) is True keep their value from ``x`` (image completion).
- ``param_indices(c)``: which parameter channels the distribution of colour ``c`` reads (the causality test
  checks exactly these).
- ``channel_log_probs(params, x, channel) -> (B, K)``: the log-probabilities of all K values of one channel of
  one pixel, given that pixel's parameters ``(B, P)`` and (for coupled heads) its earlier channels in ``x``;
  the codec turns these into integer frequency tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample from softmax(logits) over the last axis with explicit uniform noise (reproducible per seed)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    return torch.argmax(logits.float() + gumbel, dim=-1)


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
    ) -> torch.Tensor:
        raise NotImplementedError

    def param_indices(self, channel: int) -> list[int]:
        raise NotImplementedError

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        """Log-probabilities (B, K) of every value of ``channel`` of one pixel, given its parameters (B, P) and
        the pixel's current values (B, C), of which only the channels before ``channel`` may be read."""
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

    def sample(self, params, x, channels, keep=None, temperature=1.0, generator=None):
        out = x.clone()
        logits = params.view(params.shape[0], self.num_channels, self.num_levels)  # (B, C, K)
        for c in channels:
            drawn = gumbel_argmax(logits[:, c] / temperature, generator)
            out[:, c] = drawn if keep is None else torch.where(keep[:, c], x[:, c], drawn)
        return out

    def param_indices(self, channel: int) -> list[int]:
        k = self.num_levels
        return list(range(channel * k, (channel + 1) * k))

    def channel_log_probs(self, params, x, channel):
        logits = params.view(params.shape[0], self.num_channels, self.num_levels)[:, channel]  # (B, K)
        return F.log_softmax(logits.float(), dim=-1)


HEADS: dict[str, type[Head]] = {"categorical": CategoricalHead}


def build_head(name: str, num_channels: int, num_levels: int, **kwargs) -> Head:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; available: {', '.join(sorted(HEADS))}")
    return HEADS[name](num_channels, num_levels, **kwargs)
