"""Exact negative log-likelihood and bits per dimension."""

from __future__ import annotations

import math

import torch


def bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per image to bits per dimension: nats / (D ln 2)."""
    return nats / (num_dims * math.log(2.0))
