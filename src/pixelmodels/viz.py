"""Pictures: image grids (more plots, receptive-field maps and NLL heat maps come later)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor, num_levels: int) -> np.ndarray:
    """Levels in [0, K) -> 8-bit values, level k -> round(255 k / (K - 1)); (N, C, H, W) -> (N, H, W, C)."""
    x = images.detach().cpu().double() * (255.0 / (num_levels - 1))
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    num_levels: int,
    nrow: int | None = None,
    scale: int | None = None,
    padding: int = 1,
) -> Path:
    """Save images (N, C, H, W) with values in [0, K) as one PNG grid, ``nrow`` images per row.

    ``nrow`` defaults to a square-ish grid; ``scale`` enlarges each pixel (nearest neighbour; default: so that
    an image is at least 32 pixels tall); ``padding`` pixels of white separate the images.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    scale = scale or max(1, math.ceil(32 / h))
    ncol_rows = math.ceil(n / nrow)
    pixels = to_uint8(images, num_levels).repeat(scale, axis=1).repeat(scale, axis=2)  # (N, sH, sW, C)
    hs, ws = h * scale, w * scale
    grid = np.full((ncol_rows * (hs + padding) + padding, nrow * (ws + padding) + padding, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = padding + r * (hs + padding), padding + q * (ws + padding)
        grid[top : top + hs, left : left + ws] = pixels[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # never leave a half-written PNG
    try:
        Image.fromarray(grid[:, :, 0] if c == 1 else grid).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
