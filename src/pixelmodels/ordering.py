"""Generation orders.

An order is a list of steps; a step is one pixel ``(h, w)`` and the colour channels drawn there together,
``(h, w, (c, ...))``. Channel-masked models draw one channel a step (R, then G, then B); models whose head
draws a pixel's channels jointly (DMoL) take all of them in one step. Every model's sampler, its causality
test and its codec walk the same list.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Step(NamedTuple):
    h: int
    w: int
    channels: tuple[int, ...]


def raster_order(num_channels: int, height: int, width: int, joint_channels: bool = False) -> list[Step]:
    """Rows top to bottom, pixels left to right, channels R -> G -> B inside a pixel."""
    steps = []
    for h in range(height):
        for w in range(width):
            if joint_channels:
                steps.append(Step(h, w, tuple(range(num_channels))))
            else:
                steps.extend(Step(h, w, (c,)) for c in range(num_channels))
    return steps


def subscale_order(num_channels: int, height: int, width: int, scale: int, joint_channels: bool = False) -> list[Step]:
    """Subscale order (Menick & Kalchbrenner 2018, Figure 3): slices ``x[:, :, a::S, b::S]`` in raster order
    of the offset (a, b); raster order (and R -> G -> B) inside each slice."""
    if height % scale or width % scale:
        raise ValueError(f"image size {height}x{width} is not divisible by the subscale factor {scale}")
    steps = []
    for a in range(scale):
        for b in range(scale):
            for step in raster_order(num_channels, height // scale, width // scale, joint_channels):
                steps.append(Step(a + step.h * scale, b + step.w * scale, step.channels))
    return steps


def rank_map(steps: list[Step], num_channels: int, height: int, width: int) -> torch.Tensor:
    """(C, H, W) tensor giving the step at which each sub-pixel is generated; checks the order is complete."""
    rank = torch.full((num_channels, height, width), -1, dtype=torch.long)
    for i, (h, w, channels) in enumerate(steps):
        for c in channels:
            if rank[c, h, w] != -1:
                raise ValueError(f"sub-pixel (c={c}, h={h}, w={w}) appears twice in the order")
            rank[c, h, w] = i
    if (rank < 0).any():
        raise ValueError("the order does not cover every sub-pixel")
    return rank
