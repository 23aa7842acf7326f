"""Samplers that work for every model: ancestral sampling in the model's own order.

``naive_sample`` reruns the whole network once per step (one step = one pixel's channel, or a whole pixel
for joint heads). It is the reference the fast, cached samplers are checked against.

``cached_sample`` is the loop shared by the fast samplers of convolutional models (Ramachandran et al. 2017):
the model supplies ``pixel_fn`` (the head parameters at one pixel, computed from its layers' caches, see
``pixelmodels.nn.cache``), ``commit_fn`` (stores a finished pixel's values in the caches of the layers that
read the image) and optionally ``row_fn`` (work done once per row, e.g. a vertical stack).

``fixed_point_sample`` solves the same triangular system in parallel (Song et al. 2021, "Accelerating
Feedforward Computation via Parallel Nonlinear Equation Solving", ICML, section 3): every step's randomness is
drawn ahead of time (``head.noise``, in the order the ancestral sampler draws it), then Jacobi iterations update
every position at once from one full forward pass on the previous iterate. Ancestral sampling with that noise
is the system's unique fixed point and step t is final after t iterations, so it stops after at most one
iteration per step, and usually far fewer once the iterate stops changing. It needs only ``network`` and the
head, so it works for every model whose network emits one head's parameters per pixel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

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


def check_raster(order, height: int, width: int) -> None:
    """Cached samplers need each pixel's steps together and the pixels in raster order (a prefix is fine)."""
    visited, current = 0, None
    for h, w, _ in order:
        if (h, w) == current:
            continue
        if (h, w) != divmod(visited, width) or h >= height:
            raise ValueError(f"the cached sampler needs a raster generation order; step at pixel {(h, w)} breaks it")
        visited, current = visited + 1, (h, w)


@torch.no_grad()
def cached_sample(
    model,
    n: int,
    known=None,
    known_mask=None,
    *,
    pixel_fn: Callable[[torch.Tensor, int, int], torch.Tensor],
    commit_fn: Callable[[torch.Tensor, int, int], None],
    row_fn: Callable[[torch.Tensor, int], None] | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    trace: list | None = None,
) -> torch.Tensor:
    """Ancestral sampling in raster order with per-pixel work only.

    Args:
        pixel_fn: ``(inputs (B, C) scaled to [-1, 1], i, j) -> params (B, P)`` at pixel (i, j); called once per
            step (each channel step of a pixel recomputes that pixel's column with the values drawn so far).
        commit_fn: ``(inputs (B, C) scaled, i, j)``, called once pixel (i, j) is complete: the layers reading the
            image must store these final values (``pixel_fn`` saw the pixel before its last channel was drawn;
            masks A/B make every other activation at (i, j) independent of that channel, so nothing else is
            stale).
        row_fn: ``(canvas (B, C, H, W) integers, i)``, called before the first step of row i (rows above i are
            final then).
        trace: if a list, ``(step_index, params (B, P))`` is appended for every step.
    """
    device = next(model.parameters()).device
    x = initial_canvas(model, n, known, known_mask, device)
    order = model.order()
    check_raster(order, model.image_shape[1], model.image_shape[2])
    row = -1
    last_step_of_pixel = [a[:2] != b[:2] for a, b in zip(order[:-1], order[1:], strict=True)] + [True]
    for index, (h, w, channels) in enumerate(tqdm(order, disable=not progress, desc="sampling", leave=False)):
        if h != row:
            row = h
            if row_fn is not None:
                row_fn(x, h)
        params = pixel_fn(model.scale_input(x[:, :, h, w]), h, w)  # (B, P)
        if trace is not None:
            trace.append((index, params.detach().clone()))
        keep = None if known_mask is None else known_mask[:, :, h, w]
        x[:, :, h, w] = model.head.sample(params.float(), x[:, :, h, w], channels, keep, temperature, generator)
        if last_step_of_pixel[index]:
            commit_fn(model.scale_input(x[:, :, h, w]), h, w)
    return x


@torch.no_grad()
def fixed_point_sample(
    model,
    n: int,
    cond=None,
    known=None,
    known_mask=None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    max_iterations: int | None = None,
    stats: dict | None = None,
) -> torch.Tensor:
    """Jacobi fixed-point iteration (module docstring): the same images as ``naive_sample`` with the same seed.

    Args:
        max_iterations: stop after this many forward passes even if not converged (None: the number of steps,
            after which the result is exact).
        stats: if a dict, gets ``iterations`` (forward passes run) and ``converged`` (the last pass changed nothing,
            or every step was final).
    """
    if not model.supports_fixed_point:
        raise ValueError(f"model {model.model_name!r} cannot be sampled by fixed-point iteration; use 'naive'")
    device = next(model.parameters()).device
    x = initial_canvas(model, n, known, known_mask, device)
    order = model.order()
    noise = [model.head.noise(n, channels, generator, device) for _, _, channels in order]  # ancestral order
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)  # steps by the channels they draw
    for index, (_, _, channels) in enumerate(order):
        groups[channels].append(index)
    batches = []
    for channels, indices in groups.items():
        hs = torch.tensor([order[i].h for i in indices], device=device)
        ws = torch.tensor([order[i].w for i in indices], device=device)
        # per channel drawn, per noise tensor: (n, S, ...) -> (n*S, ...), images major, steps minor
        stacked = [
            tuple(torch.stack([noise[i][c][k] for i in indices], dim=1).flatten(0, 1) for k in range(len(parts)))
            for c, parts in enumerate(noise[indices[0]])
        ]
        keep = None if known_mask is None else known_mask[:, :, hs, ws].transpose(1, 2).flatten(0, 1)  # (n*S, C)
        batches.append((channels, hs, ws, stacked, keep))
    del noise

    limit = len(order) if max_iterations is None else min(max_iterations, len(order))
    iterations, converged = 0, False
    bar = tqdm(total=limit, disable=not progress, desc="fixed-point iterations", leave=False)
    while iterations < limit and not converged:
        params = model.network(model.scale_input(x), cond).float()  # (n, P, H, W)
        new = x.clone()
        for channels, hs, ws, stacked, keep in batches:
            p = params[:, :, hs, ws].transpose(1, 2).flatten(0, 1)  # (n*S, P)
            current = x[:, :, hs, ws].transpose(1, 2).flatten(0, 1)  # (n*S, C)
            drawn = model.head.sample(p, current, channels, keep, temperature, noise=stacked)  # (n*S, C)
            drawn = drawn.view(n, len(hs), -1).transpose(1, 2)  # (n, C, S)
            for c in channels:
                new[:, c, hs, ws] = drawn[:, c]
        iterations += 1
        converged = torch.equal(new, x) or iterations == len(order)
        x = new
        bar.update()
    bar.close()
    if stats is not None:
        stats.update(iterations=iterations, converged=converged)
    return x
