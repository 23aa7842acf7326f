"""Recurrent building blocks of PixelRNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3).

- ``GateConv2d``: the masked input-to-state convolution emitting the four LSTM gates. Gates are laid out
  gate-major (channel ``g * units + j`` is unit j of gate g) and every gate block carries the same R -> G -> B
  channel-group mask, so unit j of every gate belongs to colour group ``j * C // units``: the same group as
  unit j of the hidden and cell states. (One ``MaskedConv2d`` with ``4 * units`` outputs would assign the
  groups over all 4h channels at once and mix colours inside a unit.)
- ``lstm_cell``: the LSTM update of equation (3): ``o, f, i = sigmoid(...)``, ``g = tanh(...)``,
  ``c = f * c_prev + i * g``, ``h = o * tanh(c)`` (our channel blocks are ordered i, f, o, g).
- ``skew`` / ``unskew``: the Diagonal BiLSTM's map skew (section 3.2, Figure 3): row i shifted right by i, so
  that every diagonal of the image becomes a column.
- ``pointwise``: a 1x1 (masked) convolution as a matrix product on one pixel's features, for cached samplers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pixelmodels.nn.masked import MaskedConv2d, MaskType, make_mask

NUM_GATES = 4  # i, f, o, g


class GateConv2d(MaskedConv2d):
    """Masked convolution from ``in_channels`` features to the 4 gates of ``units`` LSTM units, (B, 4*units, H, W).

    Args:
        in_channels: input features (split into ``num_groups`` colour groups).
        units: hidden units per gate (split into ``num_groups`` colour groups).
        kernel_size: odd int or (kh, kw).
        mask_type: "A" or "B" (see ``MaskedConv2d``).
        num_groups: number of colours C.
    """

    def __init__(
        self,
        in_channels: int,
        units: int,
        kernel_size: int | tuple[int, int],
        mask_type: MaskType,
        num_groups: int = 1,
    ):
        super().__init__(in_channels, NUM_GATES * units, kernel_size, mask_type, num_groups)
        mask = make_mask(in_channels, units, self.kernel_size, mask_type, num_groups)  # (units, in, kh, kw)
        self.mask = mask.repeat(NUM_GATES, 1, 1, 1)  # (4*units, in, kh, kw): same groups in every gate block


def lstm_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step. gates (B, 4h, ...) gate-major [i, f, o, g]; cell (B, h, ...) -> (hidden, cell)."""
    i, f, o, g = gates.chunk(NUM_GATES, dim=1)  # each (B, h, ...)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1) with ``out[..., i, i + w] = x[..., i, w]``, zeros elsewhere."""
    b, c, h, w = x.shape
    flat = F.pad(x, (0, h)).flatten(2)  # (B, C, H * (W + H)): row i starts at i * (W + H)
    return flat[:, :, : h * (w + h - 1)].reshape(b, c, h, w + h - 1)  # row i now starts i columns later


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of ``skew``: (B, C, H, W + H - 1) -> (B, C, H, W) with ``out[..., i, w] = x[..., i, i + w]``."""
    b, c, h, _ = x.shape
    flat = F.pad(x.flatten(2), (0, h))  # (B, C, H * (W + H))
    return flat.reshape(b, c, h, width + h)[..., :width]


def pointwise(conv: MaskedConv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """A 1x1 masked conv as a function on one pixel's features (B, in) -> (B, out), mask applied once."""
    weight = (conv.weight * conv.mask)[:, :, 0, 0]  # (out, in)
    bias = conv.bias
    return lambda v: F.linear(v, weight, bias)
