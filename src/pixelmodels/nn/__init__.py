"""Causal building blocks shared by the models."""

from pixelmodels.nn.masked import MaskedConv2d, channel_group, make_mask
from pixelmodels.nn.shifted import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    concat_elu,
    down_shift,
    right_shift,
)

__all__ = [
    "DownRightShiftedConv2d",
    "DownRightShiftedConvTranspose2d",
    "DownShiftedConv2d",
    "DownShiftedConvTranspose2d",
    "MaskedConv2d",
    "channel_group",
    "concat_elu",
    "down_shift",
    "make_mask",
    "right_shift",
]
