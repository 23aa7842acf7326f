"""Helpers for the model contract suite (causality, normalization, sampler agreement)."""

from __future__ import annotations

import itertools

import torch

import pixelmodels
from pixelmodels.ordering import rank_map


def build(variant, shape, num_levels):
    return pixelmodels.build(variant.name, image_shape=shape, num_levels=num_levels, **variant.hparams)


def all_images(shape, num_levels) -> torch.Tensor:
    """Every image of the space, (K^(C*H*W), C, H, W)."""
    c, h, w = shape
    grid = torch.tensor(list(itertools.product(range(num_levels), repeat=c * h * w)), dtype=torch.long)
    return grid.view(-1, c, h, w)


def dependency_violations(model, batch: int = 3) -> tuple[list, list]:
    """Gradient check of the model's order.

    Returns (leaks, isolated): ``leaks`` lists (output sub-pixel, input sub-pixel) pairs where the parameters of
    an output depend on an input that is not generated strictly before it; ``isolated`` lists outputs that
    depend on no input although earlier sub-pixels exist (a model that ignores its context).
    """
    c, h, w = model.image_shape
    rank = rank_map(model.order(), c, h, w)
    inputs = (torch.rand(batch, c, h, w) * 2 - 1).requires_grad_(True)
    params = model.network(inputs, None)
    leaks, isolated = [], []
    for ci in range(c):
        idx = model.head.param_indices(ci)
        for hi in range(h):
            for wi in range(w):
                (grad,) = torch.autograd.grad(params[:, idx, hi, wi].sum(), inputs, retain_graph=True)
                depends = grad.abs().sum(0) > 0  # (C, H, W)
                allowed = rank < rank[ci, hi, wi]
                for q in (depends & ~allowed).nonzero().tolist():
                    leaks.append(((ci, hi, wi), tuple(q)))
                if allowed.any() and not depends.any():
                    isolated.append((ci, hi, wi))
    return leaks, isolated


def correlated_data(shape, num_levels, n, generator=None) -> torch.Tensor:
    """Images whose sub-pixels mostly share one value: a distribution with strong dependencies."""
    c, h, w = shape
    base = torch.randint(num_levels, (n, 1, 1, 1), generator=generator).expand(n, c, h, w)
    noise = torch.randint(num_levels, (n, c, h, w), generator=generator)
    flip = torch.rand(n, c, h, w, generator=generator) < 0.15
    return torch.where(flip, noise, base).contiguous()


def fit(model, data: torch.Tensor, steps: int = 150, lr: float = 1e-2, batch: int = 256):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g)
        loss = -model.log_prob(data[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def empirical_tv(model, samples: torch.Tensor) -> float:
    """Total variation between the empirical distribution of ``samples`` and exp(log_prob) over the space."""
    space = all_images(model.image_shape, model.num_levels)
    with torch.no_grad():
        p = model.log_prob(space).exp()
    k = model.num_levels
    weights = k ** torch.arange(space[0].numel() - 1, -1, -1)
    index = (samples.flatten(1) * weights).sum(1)
    counts = torch.bincount(index, minlength=len(space)).float()
    return 0.5 * (counts / counts.sum() - p).abs().sum().item()
