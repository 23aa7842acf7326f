"""Exact negative log-likelihood and bits per dimension, per image and over a whole data set."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from pixelmodels.models.base import AutoregressiveModel


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


# ----- whole images of any size ------------------------------------------------------------------------------
BAND_PIXELS = 1 << 16  # output pixels per band when a model's context is finite (bounds the activations)


@dataclass
class WholeImageResult:
    """Exact NLL over whole images: ``bits_per_dim`` = total bits / total sub-pixels (images of any size)."""

    bits_per_dim: float
    total_bits: float
    num_dims: int
    num_images: int
    per_image_bits_per_dim: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def context_rows(model) -> int | None:
    """How many rows above a pixel its parameters can read, when the model declares a finite bound
    (``context_rows``, else a PixelCNN's ``receptive_radius``); None: unbounded (recurrent, U-Net) or unknown."""
    rows = getattr(model, "context_rows", None)
    return getattr(model, "receptive_radius", None) if rows is None else rows


def model_at_size(model, height: int, width: int):
    """The same model (same weights) built for ``height x width`` images; a one-line ValueError when it cannot be.

    Built from ``model.config`` and loaded with ``strict=True``: a model whose architecture or weights depend on
    the image size (e.g. SPN needs H and W divisible by its scale S) is refused with the reason, never guessed.
    """
    from pixelmodels.registry import build

    c = model.image_shape[0]
    if (height, width) == tuple(model.image_shape[1:]):
        return model
    config = dict(model.config)
    name = config.pop("name")
    config.pop("image_shape")
    try:
        twin = build(name, image_shape=(c, height, width), **config)
        twin.load_state_dict(model.state_dict(), strict=True)
    except (ValueError, RuntimeError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines()]
        mismatch = [line for line in lines if line.startswith("size mismatch")]
        reason = f"its weights depend on the image size ({mismatch[0]})" if mismatch else lines[0]
        raise ValueError(f"model {name!r} cannot evaluate {height}x{width} images: {reason}") from None
    device = next(model.parameters()).device
    return twin.to(device).eval()


@torch.no_grad()
def image_log_prob(model, image: torch.Tensor, band_rows: int | None = None, progress: bool = False) -> float:
    """Exact log p(image) in nats (float64 sum) of one ``(C, H, W)`` integer image of any size.

    Models with a finite ``context_rows`` r are run on row bands: output rows ``[a, b)`` come from input rows
    ``[a - r, b)``, which gives the same numbers as one pass over the whole image (up to float rounding) with
    memory for ``band_rows + r`` rows only (``band_rows`` default: about 65k pixels per band). Other models
    (recurrent, PixelCNN++'s U-Net, SPN, and any model with its own ``log_prob``) are run on the whole image
    at once through their ``log_prob``: memory for the whole image's
    activations of one layer at a time (no gradients are kept).
    """
    if model.num_classes is not None:
        raise ValueError(f"model {model.model_name!r} is class-conditional; whole images have no labels")
    if image.dim() != 3 or image.shape[0] != model.image_shape[0]:
        raise ValueError(f"expected a ({model.image_shape[0]}, H, W) image, got {tuple(image.shape)}")
    _, height, width = image.shape
    device = next(model.parameters()).device
    x = image.to(device).long()[None]  # (1, C, H, W)
    rows = context_rows(model) if type(model).log_prob is AutoregressiveModel.log_prob else None
    band = height if rows is None else max(1, band_rows or BAND_PIXELS // width)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        starts = range(0, height, band)
        for start in tqdm(starts, disable=not progress or len(starts) == 1, desc="rows", leave=False):
            stop = min(height, start + band)
            top = 0 if rows is None else max(0, start - rows)
            part = x[:, :, top:stop]  # (1, C, rows, W): the band and the rows above it that it reads
            net = model_at_size(model, stop - top, width)
            if rows is None:  # one pass; the model's own log_prob (SPN's depth stages have their own)
                total += net.log_prob(part).double().sum().item()
                continue
            params = net.network(net.scale_input(part), None).float()  # (1, P, rows, W)
            log_p = net.head.log_prob(params, part)  # (1, C, rows, W)
            total += log_p[:, :, start - top :].double().sum().item()
    finally:
        model.train(was_training)
    return total


def images_nll(
    model, images: list[torch.Tensor], band_rows: int | None = None, progress: bool = False
) -> WholeImageResult:
    """Exact bits per sub-pixel of whole images (any sizes) under ``model``: :func:`image_log_prob` per image."""
    if not images:
        raise ValueError("cannot evaluate on an empty list of images")
    bits, dims, per_image = 0.0, 0, []
    for image in tqdm(images, disable=not progress, desc="images"):
        if image.numel() and int(image.max()) >= model.num_levels:
            raise ValueError(f"image values must be in [0, {model.num_levels}), got max {int(image.max())}")
        b = -image_log_prob(model, image, band_rows, progress) / math.log(2.0)
        bits, dims = bits + b, dims + image.numel()
        per_image.append(b / image.numel())
    return WholeImageResult(bits / dims, bits, dims, len(images), per_image)
