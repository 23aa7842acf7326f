"""Gated PixelCNN building blocks (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders", NeurIPS, sections 2.1-2.3 and Figure 2), reusable as a conditioned masked decoder.

Two stacks replace PixelCNN's masked convolutions, which leave a blind spot (paper Figure 1):

- the **vertical stack** sees only rows strictly above the current pixel. Its input is the image shifted down
  one row; every layer is then an (n//2+1) x n convolution over the current and upper rows of its input
  (``VerticalConv``). It has no channel groups: nothing in it sees the current row.
- the **horizontal stack** sees the pixels left of the current one in its row, and the current pixel under
  mask A (first layer) or B (later layers) with R -> G -> B channel groups (``HorizontalConv``, 1 x (n//2+1)).
  Each layer adds a 1x1 projection of the vertical stack's pre-activation at the same position (the link):
  the vertical stack never sees the current row, so the link leaks nothing.

Both stacks use the gated unit ``tanh(f) * sigmoid(g)`` (eq. 2); ``f`` and ``g`` are the two halves of a
convolution with 2p outputs, each half carrying the same channel groups. The horizontal stack is residual
(after a 1x1 conv) from its second layer on; each layer also emits a 1x1 skip output, summed over layers.

Conditioning (section 2.3, eq. 4-5): a class label's learned embedding and/or a 1x1 projection of a spatial
map are added to ``f`` and ``g`` inside every gate of both stacks. Neither depends on the image, so causality
is untouched.

``GatedStack`` is the whole decoder body (inputs -> summed skips); ``GatedStackStepper`` runs it one pixel at
a time with caches for fast sampling (the vertical stack advances a row at a time, the horizontal stack a
pixel at a time, as in Ramachandran et al. 2017's fast PixelCNN++).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelmodels.nn.cache import ConvCache, pointwise_weight
from pixelmodels.nn.masked import MaskedConv2d, MaskType, channel_group


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(f) * sigmoid(g), with f and g the two halves of dimension 1."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


def gated_group_mask(in_channels: int, channels: int, mask_type: MaskType, num_groups: int) -> torch.Tensor:
    """(2*channels, in_channels) centre mask for a convolution feeding a gate: both halves (f and g) get the
    channel groups of a ``channels``-wide output, so the gate multiplies features of the same colour."""
    g_out = channel_group(torch.arange(channels), channels, num_groups).repeat(2)[:, None]
    g_in = channel_group(torch.arange(in_channels), in_channels, num_groups)[None, :]
    return (g_in < g_out if mask_type == "A" else g_in <= g_out).float()


class VerticalConv(nn.Conv2d):
    """(n//2+1) x n convolution over the current row and the n//2 rows above it ('down' conv), width kept.

    Fed the image shifted down one row (``shift_down``), a stack of these sees only rows above the current one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        super().__init__(in_channels, out_channels, (kernel_size // 2 + 1, kernel_size))
        self.half = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.half, self.half, self.half, 0))  # left, right, top, bottom
        return super().forward(x)

    def cache(self, batch: int, height: int, width: int) -> ConvCache:
        return ConvCache(self.weight, self.bias, batch, height, width, left=self.half)


class HorizontalConv(nn.Conv2d):
    """1 x (n//2+1) convolution over the current pixel and the n//2 pixels left of it, feeding a gate.

    The current pixel (last kernel column) is masked by colour group: mask A hides the current sub-pixel and
    later colours, mask B shows the output's own group (see ``pixelmodels.nn.masked``).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, mask_type: MaskType, num_groups: int):
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        super().__init__(in_channels, 2 * channels, (1, kernel_size // 2 + 1))
        self.half = kernel_size // 2
        mask = torch.ones(2 * channels, in_channels, 1, self.half + 1)
        mask[:, :, 0, -1] = gated_group_mask(in_channels, channels, mask_type, num_groups)
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config, never stored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.half, 0, 0, 0)), self.weight * self.mask, self.bias)

    def cache(self, batch: int, height: int, width: int) -> ConvCache:
        return ConvCache(self.weight * self.mask, self.bias, batch, height, width, left=self.half)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Row i of the output is row i-1 of the input (zeros on top)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class GatedLayer(nn.Module):
    """One layer of both stacks (paper Figure 2). ``first`` = mask A and no residual (the input is the image)."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, num_groups: int, first: bool):
        super().__init__()
        p = channels
        self.first = first
        self.v_conv = VerticalConv(in_channels, 2 * p, kernel_size)
        self.h_conv = HorizontalConv(in_channels, p, kernel_size, "A" if first else "B", num_groups)
        self.link = nn.Conv2d(2 * p, 2 * p, 1)  # vertical -> horizontal; the vertical stack sees no current row
        self.h_out = MaskedConv2d(p, p, 1, "B", num_groups)
        self.skip = MaskedConv2d(p, p, 1, "B", num_groups)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond_v: torch.Tensor | float = 0.0, cond_h: torch.Tensor | float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v) + cond_v  # (B, 2p, H, W)
        gated = gate(self.h_conv(h) + self.link(v_pre) + cond_h)  # (B, p, H, W)
        h_next = self.h_out(gated) if self.first else h + self.h_out(gated)
        return gate(v_pre), h_next, self.skip(gated)


class GatedStack(nn.Module):
    """Vertical + horizontal gated stacks with optional class-label and spatial conditioning.

    Args:
        in_channels: channels of the input image (C).
        channels: p, the width of both stacks (gates take 2p pre-activations).
        num_layers: number of gated layers (>= 1).
        kernel_size: n, the receptive field of each layer (odd).
        num_groups: colour groups of the channel masks (C, or 1 for heads that draw a pixel jointly).
        num_classes: labels embedded into every gate; the extra index ``num_classes`` is a learned
            "no label" embedding, used when no labels are given (None: no label input).
        cond_channels: channels of a spatial conditioning map (same H, W as the image), 1x1 projected into
            every gate (0: none).

    ``forward(x, labels, cond_map) -> skip`` (B, p, H, W): the sum of every layer's skip output.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_layers: int,
        kernel_size: int = 3,
        num_groups: int = 1,
        num_classes: int | None = None,
        cond_channels: int = 0,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if channels < num_groups:
            raise ValueError(f"channels ({channels}) must be at least the number of colour groups ({num_groups})")
        self.channels, self.num_classes, self.cond_channels = channels, num_classes, cond_channels
        self.layers = nn.ModuleList(
            GatedLayer(in_channels if i == 0 else channels, channels, kernel_size, num_groups, first=i == 0)
            for i in range(num_layers)
        )
        # one embedding / projection for all layers and both stacks: (layer, stack, 2p) flattened
        width = num_layers * 4 * channels
        self.label_embedding = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.map_projection = nn.Conv2d(cond_channels, width, 1) if cond_channels else None

    def conditioning(
        self, batch: int, labels: torch.Tensor | None, cond_map: torch.Tensor | None
    ) -> list[tuple[torch.Tensor | float, torch.Tensor | float]]:
        """Per layer, the (vertical, horizontal) biases added inside the gates: (B, 2p, 1|H, 1|W) or 0."""
        bias: torch.Tensor | float = 0.0
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.full(
                    (batch,), self.num_classes, dtype=torch.long, device=self.label_embedding.weight.device
                )
            bias = self.label_embedding(labels)[:, :, None, None]  # (B, L*4p, 1, 1)
        if self.map_projection is not None and cond_map is not None:
            bias = bias + self.map_projection(cond_map)  # (B, L*4p, H, W)
        if isinstance(bias, float):
            return [(0.0, 0.0)] * len(self.layers)
        return [tuple(layer.chunk(2, dim=1)) for layer in bias.chunk(len(self.layers), dim=1)]

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, cond_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        v, h, skip = shift_down(x), x, 0.0
        for layer, (cond_v, cond_h) in zip(self.layers, self.conditioning(x.shape[0], labels, cond_map), strict=True):
            v, h, s = layer(v, h, cond_v, cond_h)
            skip = skip + s
        return skip  # (B, p, H, W)


class GatedStackStepper:
    """Runs a ``GatedStack`` incrementally for fast sampling.

    ``start_row(prev_row, i)`` computes the vertical stack along row i once image row i-1 is final (prev_row:
    its scaled inputs (B, C, W), None for i = 0); ``pixel(inputs, i, j)`` then computes the horizontal stack at
    (i, j) from the current pixel's inputs (B, C) and the caches, returning the summed skip (B, p);
    ``commit(inputs, i, j)`` stores a finished pixel's final values.
    """

    def __init__(
        self,
        stack: GatedStack,
        batch: int,
        height: int,
        width: int,
        labels: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ):
        self.stack, self.height, self.width = stack, height, width
        self.v_caches = [layer.v_conv.cache(batch, height, width) for layer in stack.layers]
        self.h_caches = [layer.h_conv.cache(batch, height, width) for layer in stack.layers]
        self.links = [(layer.link.weight[:, :, 0, 0], layer.link.bias) for layer in stack.layers]
        self.outs = [(pointwise_weight(layer.h_out), layer.h_out.bias) for layer in stack.layers]
        self.skips = [(pointwise_weight(layer.skip), layer.skip.bias) for layer in stack.layers]
        self.cond = stack.conditioning(batch, labels, cond_map)
        self.h_rows: list[torch.Tensor] = []  # per layer: horizontal pre-activation from the link + cond, row i

    def start_row(self, prev_row: torch.Tensor | None, i: int) -> None:
        v = self.v_caches[0].buffer.new_zeros(self.v_caches[0].buffer.shape[:2] + (self.width,))  # (B, C, W)
        if prev_row is not None:
            v = prev_row  # (B, C, W): the vertical stack's input is the image shifted down one row
        self.h_rows = []
        for cache, (weight, bias), (cond_v, cond_h) in zip(self.v_caches, self.links, self.cond, strict=True):
            cache.write_row(i, v)
            v_pre = cache.output_row(i) + _row(cond_v, i)  # (B, 2p, W)
            h_row = torch.einsum("oc,bcw->bow", weight, v_pre) + bias[:, None] + _row(cond_h, i)  # (B, 2p, W)
            self.h_rows.append(h_row.transpose(1, 2).contiguous())  # (B, W, 2p)
            v = gate(v_pre)

    def pixel(self, inputs: torch.Tensor, i: int, j: int) -> torch.Tensor:
        h, skip = inputs, 0.0
        for k, cache in enumerate(self.h_caches):
            gated = gate(cache.step(i, j, h) + self.h_rows[k][:, j])  # (B, p)
            out = F.linear(gated, *self.outs[k])
            h = out if k == 0 else h + out
            skip = skip + F.linear(gated, *self.skips[k])
        return skip  # (B, p)

    def commit(self, inputs: torch.Tensor, i: int, j: int) -> None:
        self.h_caches[0].write(i, j, inputs)


def _row(bias: torch.Tensor | float, i: int) -> torch.Tensor | float:
    """Row i of a conditioning bias (B, 2p, 1|H, 1|W) as (B, 2p, 1|W)."""
    if isinstance(bias, float):
        return bias
    return bias[:, :, i if bias.shape[2] > 1 else 0]
