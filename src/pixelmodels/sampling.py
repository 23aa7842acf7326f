"""Samplers that work for every model: ancestral sampling in the model's own order.

``naive_sample`` reruns the whole network once per step (one step = one pixel's channel, or a whole pixel
for joint heads). It is the reference the fast, cached samplers are checked against.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def initial_canvas(model, n: int, known, known_mask, device) -> torch.Tensor:
    x = torch.zeros(n, *model.image_shape, dtype=torch.long, device=device)
    return x if known is None else torch.where(known_mask, known, x)


@torch.no_grad()
def naive_sample(
    model,
    n: int,
    cond=None,
    known=None,
    known_mask=None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    device = next(model.parameters()).device
    x = initial_canvas(model, n, known, known_mask, device)
    for h, w, channels in tqdm(model.order(), disable=not progress, desc="sampling", leave=False):
        params = model.network(model.scale_input(x), cond)[:, :, h, w]  # (B, P)
        keep = None if known_mask is None else known_mask[:, :, h, w]
        x[:, :, h, w] = model.head.sample(params.float(), x[:, :, h, w], channels, keep, temperature, generator)
    return x
