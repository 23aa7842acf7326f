"""Pieces shared by the quantized families: activation calibration by forward hooks, and the output network
(ReLU, 1x1 mask-B conv, ReLU, 1x1 mask-B conv to the head's parameters) with the head's fixed-point formats."""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from pixelmodels.heads import DiscretizedMixLogisticHead
from pixelmodels.quantized import layers
from pixelmodels.quantized.head import IntCategorical, IntDMoL
from pixelmodels.quantized.tables import Formats


class Peaks:
    """Largest |activation| seen per name, over calibration batches (whole tensors, or per channel)."""

    def __init__(self):
        self.peak: dict[str, float] = defaultdict(float)
        self.channel: dict[str, np.ndarray] = {}

    def record(self, name: str, t: torch.Tensor) -> None:
        self.peak[name] = max(self.peak[name], float(t.detach().abs().max()))

    def record_channels(self, name: str, t: torch.Tensor) -> None:
        peak = t.detach().abs().amax(dim=(0, 2, 3)).double().cpu().numpy()  # (C,) of (B, C, H, W)
        self.channel[name] = np.maximum(self.channel.get(name, peak), peak)

    @contextmanager
    def hooks(self, named: dict[str, tuple[nn.Module, str]]):
        """Record while active: ``named[name] = (module, what)``, what in "out", "in", "out1" (second output),
        "channels" (per-channel peaks of the output)."""

        def make(name: str, what: str):
            def hook(module, inputs, output):
                if what == "in":
                    self.record(name, inputs[0])
                elif what == "out1":
                    self.record(name, output[1])
                elif what == "channels":
                    self.record_channels(name, output)
                else:
                    self.record(name, output)

            return hook

        handles = [module.register_forward_hook(make(name, what)) for name, (module, what) in named.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def masked_weight(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight * conv.mask if hasattr(conv, "mask") else conv.weight


def output_hooks(output: nn.Sequential) -> dict[str, tuple[nn.Module, str]]:
    return {"output.hidden": (output[1], "out"), "output.params": (output[3], "channels")}


def head_spec(model) -> dict:
    if isinstance(model.head, DiscretizedMixLogisticHead):
        return {"name": "dmol", "num_mixtures": model.head.num_mixtures}
    return {"name": "categorical"}


def build_output(store, output: nn.Sequential, in_scale, in_bound, peaks: Peaks, cfg: dict) -> None:
    """Quantize the output network, input: ReLU-ed integers of scale ``in_scale`` (|x| <= in_bound)."""
    fmt, bits = Formats(**cfg["formats"]), cfg["weight_bits"]
    c, k = cfg["image_shape"][0], cfg["num_levels"]
    acc_scale, acc_bound = layers.build_conv(
        store, "output.0", masked_weight(output[1]), output[1].bias, in_scale, in_bound, bits
    )
    hid_scale, hid_bound = layers.act_scale(peaks.peak["output.hidden"], cfg["act_bits"])
    layers.build_rescale(store, "output.0.out", acc_scale, acc_bound, hid_scale, hid_bound)
    acc_scale, acc_bound = layers.build_conv(
        store, "output.1", masked_weight(output[3]), output[3].bias, hid_scale, hid_bound, bits
    )
    spec, channel_peaks = cfg["head"], peaks.channel["output.params"]
    if spec["name"] == "dmol":
        scale, bound = IntDMoL.param_formats(fmt, c, k, channel_peaks, spec["num_mixtures"])
    else:
        scale, bound = IntCategorical.param_formats(fmt, c, k, channel_peaks)
    layers.build_rescale(store, "output.1.out", acc_scale, acc_bound, scale, bound)


class IntOutput:
    """The integer output network: maps (B, I, H, W) or per-pixel vectors (B, I) -> parameters (fixed point)."""

    def __init__(self, store):
        self.convs = [layers.QConv(store, "output.0"), layers.QConv(store, "output.1")]
        self.rescales = [layers.Rescale(store, "output.0.out"), layers.Rescale(store, "output.1.out")]

    def to(self, device) -> IntOutput:
        for m in self.convs + self.rescales:
            m.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for conv, rescale in zip(self.convs, self.rescales, strict=True):
            x = x.clamp(min=0)  # ReLU
            if x.dim() == 2:  # one pixel per row: the 1x1 convolutions as matrix products
                x = rescale(torch.nn.functional.linear(x.double(), conv.matrix(), conv.bias).long())
            else:
                x = rescale(conv(x))
        return x


def make_head(cfg: dict, tables):
    c, k, precision = cfg["image_shape"][0], cfg["num_levels"], cfg["precision"]
    if cfg["head"]["name"] == "dmol":
        return IntDMoL(tables, c, k, precision, cfg["head"]["num_mixtures"], cfg["head"].get("components"))
    return IntCategorical(tables, c, k, precision)
