"""Self-attention over the positions of an image (Vaswani et al. 2017, "Attention Is All You Need"), masked for
raster-order generation with R -> G -> B channel groups, and its key/value-cached stepper.

Features of a position are ``D`` channels split into ``G`` contiguous colour groups, as in
``pixelmodels.nn.masked``: group g of position p may depend on positions strictly before p and on the colours < g
of p itself (after a mask-A embedding). Every layer here keeps that rule:

- ``MaskedLinear`` ("B"): output group g reads input groups <= g of the same position.
- ``GroupedLayerNorm``: normalizes each group on its own (a plain LayerNorm would mix later groups into earlier).
- ``CausalSelfAttention``: the query of a head in group g is a masked projection of groups <= g of p; keys and
  values are full projections of positions strictly before p (which are wholly visible), plus one learned
  "null" key/value that every query sees (so the first position is defined); the output projection is masked.
  Position p never reads its own keys or values, so no later colour of p leaks in.

``G = 1`` (a head that draws a pixel's channels jointly) is plain strictly-causal attention.

Stepping (``DecoderStack.stepper``): positions arrive one at a time in raster order; each layer keeps the keys
and values of the finished positions (``KVCache``), so a step costs one position's worth of every layer plus its
attention over the cache. A position's keys and values are stored when it is ``commit``-ted (after its last
colour is drawn: then its features no longer change).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pixelmodels.nn.masked import make_mask


class MaskedLinear(nn.Linear):
    """Linear map on the last axis whose output group g reads input groups <= g ("B") or < g ("A")."""

    def __init__(self, in_features: int, out_features: int, groups: int, mask_type: str = "B"):
        super().__init__(in_features, out_features)
        mask = make_mask(in_features, out_features, (1, 1), mask_type, groups)[:, :, 0, 0]
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class GroupedLayerNorm(nn.Module):
    """LayerNorm of each of ``groups`` contiguous channel groups on its own (last axis)."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        if dim % groups:
            raise ValueError(f"width {dim} is not divisible by the {groups} colour groups")
        self.groups = groups
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unflatten(-1, (self.groups, -1))
        y = F.layer_norm(y, y.shape[-1:]).flatten(-2)
        return y * self.weight + self.bias


class KVCache:
    """Keys and values of the committed positions of one attention layer: (B, heads, N, d) each, filled in order.
    ``complete`` positions also hold their own pixel's term (added once the pixel's last colour is known)."""

    def __init__(self, batch: int, heads: int, length: int, head_dim: int, like: torch.Tensor):
        self.keys = like.new_zeros(batch, heads, length, head_dim)
        self.values = like.new_zeros(batch, heads, length, head_dim)
        self.size = self.complete = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.keys[:, :, self.size], self.values[:, :, self.size] = k[:, :, 0], v[:, :, 0]
        self.size += 1


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, N, D). ``causal``: strictly-earlier positions + a null key/value, with
    grouped (masked) query and output projections; otherwise every position sees every position."""

    def __init__(self, dim: int, heads: int, groups: int = 1, causal: bool = False, pixel_channels: int = 0):
        super().__init__()
        if dim % heads or heads % groups:
            raise ValueError(f"width {dim} must split into {heads} heads, and the heads into {groups} colour groups")
        self.heads, self.head_dim, self.causal = heads, dim // heads, causal
        self.query = MaskedLinear(dim, dim, groups) if causal else nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = MaskedLinear(dim, dim, groups) if causal else nn.Linear(dim, dim)
        # Keys and values of a position also read all of its own pixel's values (a later position may see them
        # all; the residual stream of that position holds only its earlier colours).
        self.pixel = nn.Linear(pixel_channels, 2 * dim, bias=False) if pixel_channels else None
        if causal:
            self.null = nn.Parameter(torch.randn(2, heads, 1, self.head_dim) / math.sqrt(self.head_dim))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, H, N, d)

    def _with_null(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = k.shape[0]
        k = torch.cat([self.null[0].expand(b, -1, -1, -1), k], dim=2)
        return k, torch.cat([self.null[1].expand(b, -1, -1, -1), v], dim=2)

    def _keys_values(self, x: torch.Tensor, pixels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.key_value(x)
        if pixels is not None:
            kv = kv + self.pixel(pixels)
        k, v = kv.chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, D); pixels: (B, N, Cp) the positions' own values (with ``pixel_channels``)."""
        q = self._split(self.query(x))
        k, v = self._keys_values(x, pixels)
        if self.causal:
            # keys [null, k_0 .. k_{N-2}] with a top-left causal mask: query n sees null and k_0 .. k_{n-1}
            # (strictly earlier); no explicit mask, so PyTorch may pick a memory-efficient kernel.
            k, v = self._with_null(k[:, :, :-1], v[:, :, :-1])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, N, d)
        return self.out(y.transpose(1, 2).flatten(2))  # (B, N, D)

    def step(self, x: torch.Tensor, cache: KVCache, commit: bool, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """One position (B, 1, D) attending to null + the cached positions; stores its keys/values if ``commit``.
        ``pixels`` (B, N, Cp): every position's values so far (those before this one are complete)."""
        q = self._split(self.query(x))
        k, v = self._keys_values(x, None)  # this position's pixel term is added once it is complete
        seen = cache.size
        if self.pixel is not None and cache.complete < seen:  # earlier pixels now known whole: add their term
            pk, pv = (self._split(t) for t in self.pixel(pixels[:, cache.complete : seen]).chunk(2, dim=-1))
            cache.keys[:, :, cache.complete : seen] += pk
            cache.values[:, :, cache.complete : seen] += pv
            cache.complete = seen
        keys, values = self._with_null(cache.keys[:, :, :seen], cache.values[:, :, :seen])
        y = F.scaled_dot_product_attention(q, keys, values)  # (B, H, 1, d)
        if commit:
            cache.append(k, v)
        return self.out(y.transpose(1, 2).flatten(2))


class TransformerBlock(nn.Module):
    """Pre-norm attention + feed-forward block on (B, N, D), with an optional condition (B, N, Dc) added first."""

    def __init__(self, dim: int, heads: int, groups: int = 1, causal: bool = False, cond_dim: int = 0,
                 pixel_channels: int = 0):  # fmt: skip
        super().__init__()
        self.cond = nn.Linear(cond_dim, dim) if cond_dim else None
        self.norm1, self.norm2 = GroupedLayerNorm(dim, groups), GroupedLayerNorm(dim, groups)
        self.attention = SelfAttention(dim, heads, groups, causal, pixel_channels)
        linear = (lambda i, o: MaskedLinear(i, o, groups)) if causal else nn.Linear
        self.feed_forward = nn.Sequential(linear(dim, 2 * dim), nn.GELU(), linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, pixels=None) -> torch.Tensor:
        if self.cond is not None:
            x = x + self.cond(cond)
        x = x + self.attention(self.norm1(x), pixels)
        return x + self.feed_forward(self.norm2(x))

    def step(self, x, cond, cache: KVCache, commit: bool, pixels=None) -> torch.Tensor:
        if self.cond is not None:
            x = x + self.cond(cond)
        x = x + self.attention.step(self.norm1(x), cache, commit, pixels)
        return x + self.feed_forward(self.norm2(x))


def run_blocks(blocks, x: torch.Tensor, *args, recompute: bool = False) -> torch.Tensor:
    """Apply ``blocks`` in turn. ``recompute`` (when gradients are on): keep only each block's input for backward
    and recompute its activations there (activation checkpointing: the same gradients, less memory, ~1/3 more
    compute)."""
    for block in blocks:
        if recompute and torch.is_grad_enabled():
            x = checkpoint(block, x, *args, use_reentrant=False)
        else:
            x = block(x, *args)
    return x


class DecoderStack(nn.Module):
    """Causal transformer blocks over N positions in raster order, each conditioned on a per-position map; keys
    and values also read each position's own pixel values (``pixel_channels`` of them)."""

    def __init__(self, dim: int, heads: int, groups: int, layers: int, cond_dim: int, pixel_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, groups, True, cond_dim, pixel_channels) for _ in range(layers)
        )
        self.recompute = False  # see run_blocks

    def forward(self, x: torch.Tensor, cond: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        return run_blocks(self.blocks, x, cond, pixels, recompute=self.recompute)

    def stepper(self, batch: int, length: int, like: torch.Tensor) -> DecoderStepper:
        return DecoderStepper(self, batch, length, like)


class DecoderStepper:
    """Steps a ``DecoderStack`` one position at a time, in raster order, with one ``KVCache`` per block."""

    def __init__(self, stack: DecoderStack, batch: int, length: int, like: torch.Tensor):
        self.stack = stack
        self.caches = []
        for block in stack.blocks:
            att = block.attention
            self.caches.append(KVCache(batch, att.heads, length, att.head_dim, like))

    def step(self, x: torch.Tensor, cond: torch.Tensor, commit: bool, pixels: torch.Tensor) -> torch.Tensor:
        """Features (B, 1, D) and condition (B, 1, Dc) of the next position, the values of all positions (B, N, Cp;
        complete before this one) -> its output (B, 1, D)."""
        for block, cache in zip(self.stack.blocks, self.caches, strict=True):
            x = block.step(x, cond, cache, commit, pixels)
        return x
