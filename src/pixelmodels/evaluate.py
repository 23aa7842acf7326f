"""Exact negative log-likelihood and bits per dimension, per image and over a whole data set."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm


def bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per image to bits per dimension: nats / (D ln 2)."""
    return nats / (num_dims * math.log(2.0))


@dataclass
class NLLResult:
    """Mean exact NLL over ``num_images`` images: ``nll_nats`` per image and ``bits_per_dim``."""

    nll_nats: float
    bits_per_dim: float
    num_images: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def dataset_nll(
    model,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> NLLResult:
    """Exact mean NLL of ``images`` (N, C, H, W) integers under ``model``, summed in float64.

    ``labels`` (N,) are passed as ``cond`` when the model is class-conditional. The model is put in eval
    mode for the call (dropout off) and restored afterwards.
    """
    if len(images) == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    if model.num_classes is not None and labels is None:
        raise ValueError(f"model {model.model_name!r} is class-conditional but the data set has no labels")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="evaluating", leave=False):
            x = images[start : start + batch_size].to(device).long()  # (B, C, H, W)
            cond = None if model.num_classes is None else labels[start : start + batch_size].to(device)
            total -= model.log_prob(x, cond).double().sum().item()
    finally:
        model.train(was_training)
    nats = total / len(images)
    return NLLResult(nll_nats=nats, bits_per_dim=bits_per_dim(nats, model.num_dims), num_images=len(images))
