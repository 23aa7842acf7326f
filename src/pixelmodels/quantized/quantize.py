"""``quantize(model, calibration_images) -> IntegerModel``: post-training quantization of a float model.

Activation ranges come from the float model (eval mode) on the calibration images (training images only, never
a test set): every clamp is the largest |activation| seen, with headroom. Weights are quantized per output
channel; the bit widths and table formats are arguments (stored in the model's config).
"""

from __future__ import annotations

import torch

from pixelmodels.quantized import gated, pixelcnn
from pixelmodels.quantized.model import FORMAT, VERSION, IntegerModel
from pixelmodels.quantized.output import head_spec
from pixelmodels.quantized.tables import Formats, build_tables

#: family name -> module with ``calibrate(model, batches)`` and ``build(model, peaks, cfg)``.
SUPPORTED = {"gated_pixelcnn": gated, "pixelcnn": pixelcnn}


def quantize(
    model,
    calibration_images: torch.Tensor,
    cond=None,
    *,
    weight_bits: int = 12,
    act_bits: int = 16,
    precision: int = 24,
    formats: Formats | None = None,
    components: int | None = None,
    batch_size: int = 32,
) -> IntegerModel:
    """An exact integer copy of ``model`` for coding.

    Args:
        model: a trained ``gated_pixelcnn`` (unconditional or class-conditional) or ``pixelcnn`` model, either
            head.
        calibration_images: (N, C, H, W) integer images in [0, K) from the training data.
        cond: class labels (N,) of the calibration images, for class-conditional models (None: "no label").
        weight_bits, act_bits: signed bit widths of weights and of calibrated activations.
        precision: the frequency tables sum to ``2**precision``.
        formats: fixed-point formats of the tables (``pixelmodels.quantized.tables.Formats``).
        components: DMoL head only: mix only this many most probable components per sub-pixel (None: all, the
            exact mixture); fewer are proportionally faster and cost some rate (measure it).
        batch_size: calibration batch size.
    """
    name = getattr(model, "model_name", type(model).__name__)
    if name not in SUPPORTED:
        raise ValueError(
            f"integer coding supports {', '.join(sorted(SUPPORTED))}; not {name!r} (see "
            "pixelmodels.quantized for what the others need)"
        )
    if not 2 <= weight_bits <= 24 or not 4 <= act_bits <= 24:
        raise ValueError(f"weight_bits must be in [2, 24] and act_bits in [4, 24], got {weight_bits}, {act_bits}")
    if not model.num_levels + 1 < 2**precision <= 2**30:
        raise ValueError(f"precision {precision} cannot hold {model.num_levels} levels (or exceeds 30 bits)")
    x = torch.as_tensor(calibration_images).long()
    model.check_images(x)
    cfg = {
        "format": FORMAT,
        "version": VERSION,
        "family": name,
        "model": model.config,
        "image_shape": list(model.image_shape),
        "num_levels": model.num_levels,
        "precision": precision,
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "formats": (formats or Formats()).to_dict(),
        "head": head_spec(model),
    }
    if components is not None:
        if cfg["head"]["name"] != "dmol" or components < 1:
            raise ValueError(f"components applies to the dmol head only and must be >= 1, got {components}")
        cfg["head"]["components"] = int(components)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        labels = None if cond is None else torch.as_tensor(cond).long()
        batches = [
            (x[s : s + batch_size].to(device), None if labels is None else labels[s : s + batch_size].to(device))
            for s in range(0, len(x), batch_size)
        ]
        family = SUPPORTED[name]
        peaks = family.calibrate(model, batches)
        store = family.build(model, peaks, cfg)
    finally:
        model.train(was_training)
    store |= build_tables(Formats(**cfg["formats"]), model.num_levels)
    return IntegerModel(cfg, {k: v.cpu().contiguous() for k, v in store.items()})
