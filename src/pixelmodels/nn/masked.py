"""Masked convolution (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3.4).

The mask hides every pixel after the centre in raster order, and, inside the centre pixel, the channels
that come later in the R -> G -> B order. Feature maps are split into C contiguous channel groups, group g
belonging to colour g, so the same rule holds in every layer:

    kernel 5x5, mask "A" or "B"         centre pixel, C = 3 (rows: output group, cols: input group)
        1 1 1 1 1                            mask A        mask B
        1 1 1 1 1                            R: . . .      R: 1 . .
        1 1 c 0 0                            G: 1 . .      G: 1 1 .
        0 0 0 0 0                            B: 1 1 .      B: 1 1 1
        0 0 0 0 0

Mask A (first layer) stops a sub-pixel from seeing itself; mask B (later layers) lets a feature see the
features of its own group, which only ever saw earlier sub-pixels. The mask is applied functionally
(``weight * mask`` inside ``forward``), so the stored weight is never modified.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

MaskType = Literal["A", "B"]


def channel_group(index: torch.Tensor | int, num_channels: int, num_groups: int):
    """Colour group of a feature channel: channels are split into ``num_groups`` contiguous blocks."""
    return index * num_groups // num_channels


def make_mask(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int],
    mask_type: MaskType,
    num_groups: int,
) -> torch.Tensor:
    """Mask of shape (out, in, kh, kw) for a raster-order, channel-grouped causal convolution.

    The centre is at (kh // 2, kw // 2): rows above it and columns left of it in its row are visible.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if in_channels < num_groups or out_channels < num_groups:
        raise ValueError(
            f"masked conv needs at least one channel per colour group: in={in_channels}, "
            f"out={out_channels}, groups={num_groups}"
        )
    kh, kw = kernel_size
    ch, cw = kh // 2, kw // 2
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    mask[:, :, :ch, :] = 1.0
    mask[:, :, ch, :cw] = 1.0
    g_out = channel_group(torch.arange(out_channels), out_channels, num_groups)[:, None]
    g_in = channel_group(torch.arange(in_channels), in_channels, num_groups)[None, :]
    centre = g_in < g_out if mask_type == "A" else g_in <= g_out
    mask[:, :, ch, cw] = centre.float()
    return mask


def conv2d_float32(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding) -> torch.Tensor:
    """``F.conv2d`` in float32 whether or not autocast is on (the output is float32 either way)."""
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.float(), weight.float(), None if bias is None else bias.float(), padding=padding)


class Float32Conv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes in float32 under autocast: for an unmasked final layer (see
    ``MaskedConv2d``'s ``float32``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Float32Conv2d supports zero padding only")
        return conv2d_float32(x, self.weight, self.bias, self.padding)


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution that only sees earlier pixels and earlier colour groups.

    Args:
        in_channels, out_channels: feature sizes; each is split into ``num_groups`` colour groups.
        kernel_size: int or (kh, kw), odd sizes.
        mask_type: "A" (excludes the current sub-pixel) or "B" (includes its own group).
        num_groups: number of colours C of the image (1 for grayscale).
        float32: compute in float32 even under autocast (for a model's final layer: bf16 would round the
            logits / mixture means and scales, which costs measurable bits/dim).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: MaskType,
        num_groups: int = 1,
        bias: bool = True,
        float32: bool = False,
    ):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if ks[0] % 2 == 0 or ks[1] % 2 == 0:
            raise ValueError(f"masked conv needs odd kernel sizes, got {ks}")
        super().__init__(in_channels, out_channels, ks, padding=(ks[0] // 2, ks[1] // 2), bias=bias)
        self.mask_type = mask_type
        self.num_groups = num_groups
        self.float32 = float32
        mask = make_mask(in_channels, out_channels, ks, mask_type, num_groups)
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config, never stored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float32:
            return conv2d_float32(x, self.weight * self.mask, self.bias, self.padding)
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type}, num_groups={self.num_groups}"
