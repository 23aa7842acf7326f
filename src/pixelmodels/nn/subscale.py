"""Subscale slicing (Menick & Kalchbrenner 2018, "Generating High Fidelity Images with Subscale Pixel Networks
and Multidimensional Upscaling", section 3.1 and Figure 3).

An image of size H x W with subscale factor S is cut into S*S interleaved slices ``x[:, :, a::S, b::S]`` of size
(H/S) x (W/S); slice ``t = a * S + b`` is the t-th in the generation order (raster order of the offset (a, b)).

    image 4x4, S = 2            slice 0 (a=0, b=0)   slice 1 (0, 1)   slice 2 (1, 0)   slice 3 (1, 1)
      0 1 0 1                      x x                  x x              x x              x x
      2 3 2 3                      x x                  x x              x x              x x
      0 1 0 1
      2 3 2 3                   (the digit is the slice a pixel belongs to)

``to_slices`` and ``from_slices`` are exact inverses and work on any per-pixel tensor (images, parameters).
"""

from __future__ import annotations

import torch


def to_slices(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, S*S, C, H/S, W/S); slice t = a*S + b holds ``x[:, :, a::S, b::S]``."""
    b, c, h, w = x.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by the subscale factor {scale}")
    x = x.reshape(b, c, h // scale, scale, w // scale, scale)  # (B, C, h, a, w, b)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(b, scale * scale, c, h // scale, w // scale)


def from_slices(slices: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, S*S, C, h, w) -> (B, C, h*S, w*S), the inverse of ``to_slices``."""
    b, t, c, h, w = slices.shape
    if t != scale * scale:
        raise ValueError(f"expected {scale * scale} slices for subscale factor {scale}, got {t}")
    x = slices.reshape(b, scale, scale, c, h, w)  # (B, a, b, C, h, w)
    return x.permute(0, 3, 4, 1, 5, 2).reshape(b, c, h * scale, w * scale)


def earlier_slices(slices: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The context input of each target slice: every slice stacked on the channel axis, those not generated
    before the target (index >= target) set to zero.

    Args:
        slices: (B, T, C, h, w) all slices of the (teacher-forced) image.
        targets: (B, n) long, the target slice index of each of n rows per image.
    Returns:
        (B, n, T*C, h, w).
    """
    num_slices = slices.shape[1]
    seen = torch.arange(num_slices, device=slices.device) < targets[..., None]  # (B, n, T)
    stacked = slices[:, None] * seen[..., None, None, None].to(slices.dtype)  # (B, n, T, C, h, w)
    return stacked.flatten(2, 3)
