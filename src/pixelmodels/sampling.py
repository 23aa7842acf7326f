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

import math
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
    c, height, width = model.image_shape
    order = model.order()
    noise = _step_noise(model.head, order, n, generator, device)  # [channel][part]: (steps, n, *shape)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)  # steps by the channels they draw
    for index, (_, _, channels) in enumerate(order):
        groups[channels].append(index)
    # everything is kept pixel-major, (n, H*W, ...): a group of steps is a list of pixels (all of them, in raster
    # order, for raster orders: then no gather is needed)
    flat_mask = None if known_mask is None else known_mask.permute(0, 2, 3, 1).reshape(n, height * width, c)
    batches = []
    for channels, indices in groups.items():
        pixels = torch.tensor([order[i].h * width + order[i].w for i in indices], device=device)
        steps = torch.tensor(indices, device=device)
        pixels = None if torch.equal(pixels, torch.arange(height * width, device=device)) else pixels
        # (S, n, ...) -> (n*S, ...): images major, steps minor, as the parameters are flattened below
        stacked = [tuple(part[steps].transpose(0, 1).flatten(0, 1) for part in parts) for parts in noise]
        stacked = model.head.prepare_noise(stacked)  # e.g. Gumbel noise, computed once for every iteration
        keep = None if flat_mask is None else _gather(flat_mask, pixels).flatten(0, 1)  # (n*S, C)
        batches.append((channels, pixels, stacked, keep))
    del noise

    x = initial_canvas(model, n, known, known_mask, device).permute(0, 2, 3, 1).reshape(n, height * width, c)
    limit = len(order) if max_iterations is None else min(max_iterations, len(order))
    iterations, converged = 0, False
    bar = tqdm(total=limit, disable=not progress, desc="fixed-point iterations", leave=False)
    while iterations < limit and not converged:
        image = x.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()  # (n, C, H, W)
        params = model.network(model.scale_input(image), cond).float()  # (n, P, H, W)
        params = params.permute(0, 2, 3, 1).contiguous().view(n, height * width, -1)  # (n, H*W, P), one copy
        new = x.clone()
        for channels, pixels, stacked, keep in batches:
            current = _gather(x, pixels)  # (n, S, C)
            p, size = _gather(params, pixels).flatten(0, 1), current.shape[1]  # (n*S, P)
            drawn = model.head.sample(p, current.flatten(0, 1), channels, keep, temperature, noise=stacked)
            drawn = drawn.view(n, size, c)[:, :, list(channels)]  # (n, S, len(channels))
            if pixels is None:
                new[:, :, list(channels)] = drawn
            else:
                new[:, pixels[:, None], torch.tensor(channels, device=device)] = drawn
        iterations += 1
        converged = torch.equal(new, x) or iterations == len(order)
        x = new
        bar.update()
    bar.close()
    x = x.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()  # (n, C, H, W)
    if stats is not None:
        stats.update(iterations=iterations, converged=converged)
    return x


def _gather(x: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """x (n, H*W, ...) at the listed pixels (n, S, ...); all of them in order when ``pixels`` is None."""
    return x if pixels is None else x[:, pixels]


def _step_noise(head, order, n: int, generator, device) -> list[tuple[torch.Tensor, ...]]:
    """Every step's draws, as ``head.sample`` would make them one step after the other: per channel position
    in a step and per part, a tensor (steps, n, *shape). On the CPU one long draw gives the same numbers as the
    many small ones (the generator fills tensors in order), much faster; elsewhere the steps are drawn one by one."""
    counts = {len(channels) for _, _, channels in order}
    if len(counts) != 1:
        raise ValueError("the fixed-point sampler needs the same number of channels at every step")
    count, shapes = counts.pop(), head.noise_shapes()
    if torch.device(device).type != "cpu":
        per_step = [head.noise(n, channels, generator, device) for _, _, channels in order]
        return [tuple(torch.stack([s[c][k] for s in per_step]) for k in range(len(shapes))) for c in range(count)]
    sizes = [n * math.prod(shape) for shape in shapes] * count
    flat = torch.rand(len(order), sum(sizes), generator=generator, dtype=torch.float32)  # (steps, per step)
    parts = iter(flat.split(sizes, dim=1))
    return [tuple(next(parts).reshape(len(order), n, *shape) for shape in shapes) for _ in range(count)]
