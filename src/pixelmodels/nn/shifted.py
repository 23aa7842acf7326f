"""Shifted convolutions (Salimans et al. 2017, "PixelCNN++", section 2.3 and Figure 2 of van den Oord et al. 2016b).

Causality by padding instead of masks: every kernel is placed so that it only covers rows above (down-shifted)
or rows above and columns to the left (down-right-shifted) of the output position, kernel rows ending at the
output row. Two streams built from them see disjoint context shapes and together cover everything before a
pixel in raster order, without a blind spot:

    down-shifted (2, 3), output o            down-right-shifted (2, 2), output o
        x x x      (row i-1, cols j-1..j+1)       x x      (row i-1, cols j-1..j)
        x o x      (row i,   cols j-1..j+1)       x o      (row i,   cols j-1..j)

Followed by ``down_shift`` (one row down) or ``right_shift`` (one column right) the stream at (i, j) sees only
pixels strictly above, or strictly before (i, j) in raster order. With stride 2 the same padding halves the map
(ceil(H/2) x ceil(W/2)); the transposed versions double it again and crop to the requested size, so the output
at (i, j) reads the low-resolution position (i // 2, j // 2) (plus, for the down-shifted one, its horizontal
neighbours) and causality is kept at every resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of [x, -x] along dimension 1 (openai/pixel-cnn, after concatenated ReLU): (B, 2C, ...) for maps and
    vectors alike."""
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move the map one row down (zeros in the first row): (B, C, H, W) -> (B, C, H, W)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move the map one column right (zeros in the first column): (B, C, H, W) -> (B, C, H, W)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class DownShiftedConv2d(nn.Conv2d):
    """Output (i, j) reads input rows i-kh+1..i and columns j-(kw-1)/2..j+(kw-1)/2 (kw odd)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3), stride: int = 1):
        kh, kw = _pair(kernel_size)
        if kw % 2 == 0:
            raise ValueError(f"down-shifted conv needs an odd kernel width, got {kw}")
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride)
        self.shift_padding = (kw // 2, kw // 2, kh - 1, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.shift_padding))


class DownRightShiftedConv2d(nn.Conv2d):
    """Output (i, j) reads input rows i-kh+1..i and columns j-kw+1..j."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 2), stride: int = 1):
        kh, kw = _pair(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride)
        self.shift_padding = (kw - 1, 0, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.shift_padding))


class DownShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Upsampling counterpart of ``DownShiftedConv2d``: output row i reads input row i // stride only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3), stride: int = 2):
        kh, kw = _pair(kernel_size)
        if kw % 2 == 0 or kh > stride:
            raise ValueError(f"down-shifted transposed conv needs an odd width and height <= stride, got {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        h, w = output_size
        left = self.kernel_size[1] // 2
        y = super().forward(x)  # (B, out, (H-1)*s + kh, (W-1)*s + kw)
        return y[:, :, :h, left : left + w]


class DownRightShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Upsampling counterpart of ``DownRightShiftedConv2d``: output (i, j) reads input (i // s, j // s) only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 2), stride: int = 2):
        kh, kw = _pair(kernel_size)
        if kh > stride or kw > stride:
            raise ValueError(f"down-right-shifted transposed conv needs a kernel <= stride, got {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        h, w = output_size
        return super().forward(x)[:, :, :h, :w]  # (B, out, h, w)
