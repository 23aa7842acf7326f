"""Causal building blocks shared by the models."""

from pixelmodels.nn.masked import MaskedConv2d, channel_group, make_mask

__all__ = ["MaskedConv2d", "channel_group", "make_mask"]
