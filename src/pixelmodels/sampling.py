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
    block_rows: int | None = None,
    stats: dict | None = None,
) -> torch.Tensor:
    """Jacobi fixed-point iteration (module docstring): the same images as ``naive_sample`` with the same seed.

    Args:
        max_iterations: stop after this many forward passes in all, even if not converged (None: no cap; the
            result is exact after one pass per step).
        block_rows: Gauss-Seidel over blocks of rows (raster orders only): Jacobi on the steps of rows
            [r, r + block_rows) until that block stops changing, then the next block; for a ``row_croppable``
            model the network runs on rows 0 .. r + block_rows - 1 only (rows below cannot change them), for
            others on the whole image. None: one block, the image.
        stats: if a dict, gets ``iterations`` (forward passes run), ``work`` (the same counted in full-image
            passes: a pass on the first r of H rows counts r / H) and ``converged`` (every block stopped changing
            or was final).
    """
    if not model.supports_fixed_point:
        raise ValueError(f"model {model.model_name!r} cannot be sampled by fixed-point iteration; use 'naive'")
    device = next(model.parameters()).device
    c, height, width = model.image_shape
    order = model.order()
    if block_rows is not None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be a positive int, got {block_rows}")
        check_raster(order, height, width)
    noise = _step_noise(model.head, order, n, generator, device)  # [channel][part]: (steps, n, *shape)
    flat_mask = None if known_mask is None else known_mask.permute(0, 2, 3, 1).reshape(n, height * width, c)
    x = initial_canvas(model, n, known, known_mask, device).permute(0, 2, 3, 1).reshape(n, height * width, c)
    rows = height if block_rows is None else block_rows
    iterations, work, converged = 0, 0.0, True
    bar = tqdm(total=len(order), disable=not progress, desc="fixed-point steps final", leave=False)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        seen_rows = bottom if model.row_croppable else height  # the rows the network runs on
        indices = [k for k, step in enumerate(order) if top <= step.h < bottom] if block_rows else range(len(order))
        batches = _batches(model.head, order, indices, noise, flat_mask, width, seen_rows, device)
        block_cond = _crop_rows(cond, seen_rows, height)
        done = False
        for _ in range(len(indices)):  # step t of the block is final after t passes
            if max_iterations is not None and iterations >= max_iterations:
                break
            image = x[:, : seen_rows * width].view(n, seen_rows, width, c).permute(0, 3, 1, 2).contiguous()
            params = model.network(model.scale_input(image), block_cond).float()  # (n, P, b, W)
            params = params.permute(0, 2, 3, 1).contiguous().view(n, seen_rows * width, -1)  # (n, b*W, P)
            new = x.clone()
            seen, written = x[:, : seen_rows * width], new[:, : seen_rows * width]  # views: (n, b*W, C)
            for channels, pixels, stacked, keep in batches:
                current = _gather(seen, pixels)  # (n, S, C)
                p, size = _gather(params, pixels).flatten(0, 1), current.shape[1]  # (n*S, P)
                drawn = model.head.sample(p, current.flatten(0, 1), channels, keep, temperature, noise=stacked)
                drawn = drawn.view(n, size, c)[:, :, list(channels)]  # (n, S, len(channels))
                if pixels is None:
                    written[:, :, list(channels)] = drawn
                else:
                    written[:, pixels[:, None], torch.tensor(channels, device=device)] = drawn
            iterations, work = iterations + 1, work + seen_rows / height
            done = torch.equal(new, x)
            x = new
            if done:
                break
        else:
            done = True  # as many passes as steps: final
        converged = converged and done
        bar.update(len(indices))
    bar.close()
    if stats is not None:
        stats.update(iterations=iterations, work=work, converged=converged)
    return x.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()  # (n, C, H, W)


def _batches(head, order, indices, noise, flat_mask, width: int, rows: int, device) -> list[tuple]:
    """The listed steps grouped by the channels they draw: (channels, pixels (S,) or None for all ``rows * width``
    in raster order, their prepared noise (n*S, ...), their ``keep`` mask (n*S, C) or None). Everything is
    pixel-major (n, pixels, ...), images first."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index in indices:
        groups[order[index].channels].append(index)
    batches = []
    for channels, steps in groups.items():
        pixels = torch.tensor([order[k].h * width + order[k].w for k in steps], device=device)
        pixels = None if torch.equal(pixels, torch.arange(rows * width, device=device)) else pixels
        steps = torch.tensor(steps, device=device)
        stacked = [tuple(part[steps].transpose(0, 1).flatten(0, 1) for part in parts) for parts in noise]
        keep = None if flat_mask is None else _gather(flat_mask[:, : rows * width], pixels).flatten(0, 1)
        batches.append((channels, pixels, head.prepare_noise(stacked), keep))  # Gumbel etc. computed once
    return batches


def _crop_rows(cond, rows: int, height: int):
    """``cond`` for an image cropped to its first ``rows`` rows: spatial maps (B, C, H, W) lose the rows below."""
    if isinstance(cond, dict):
        return {key: _crop_rows(value, rows, height) for key, value in cond.items()}
    if isinstance(cond, torch.Tensor) and cond.dim() == 4 and cond.shape[2] == height:
        return cond[:, :, :rows]
    return cond


def _gather(x: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """x (n, pixels, ...) at the listed pixels (n, S, ...); all of them in order when ``pixels`` is None."""
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
