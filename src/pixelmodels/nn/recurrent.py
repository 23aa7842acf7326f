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
- ``RowLSTMLayer`` (section 3.1) and ``DiagonalBiLSTMLayer`` (section 3.2) with their steppers
  (``RowLSTMStepper``, ``DiagonalBiLSTMStepper``), which run the same layer one pixel at a time in raster order
  for incremental sampling (ours; the paper gives no sampler). The steppers keep only what the next steps
  need, as typed attributes, and reproduce a full forward pass exactly:

  - Row LSTM: the previous row's hidden and cell states (their state-to-state convolution is computed once
    per row) and the current row's layer inputs left of the pixel.
  - Diagonal BiLSTM, left-to-right direction: like a raster-order recurrence, the state at (i, w) needs the
    states at (i - 1, w) and (i, w - 1), both already computed. The right-to-left direction cannot advance pixel
    by pixel (its state at (i, w) depends on every pixel right of w in row i), but its output is shifted down
    one row, so row i only needs it for row i - 1: it is computed once per completed row (a right-to-left sweep
    over the finished row's cached layer inputs) and used by the whole next row. The cost per image is
    O(H * W * layers) cell updates per direction, against O((H * W)^2 * layers) for the naive sampler.

  A stepper is driven as ``start_row(i)``, then ``step(w, v)`` for every step of row i (a pixel's channel
  steps repeat the same w: mask A/B make the features of colour group g final once channel g - 1 is drawn, so
  the last call for a pixel leaves final values), then ``end_row(i, image_row)``.

Learned initial state (``learned_init=True``; the paper learns the initial state): a learned hidden and cell
vector per layer and direction is the state above the first row (Row LSTM) or left of the first column of every
row (each Diagonal LSTM direction, in its own scan direction). Initialised to zero, so a fresh model computes
what the zero-state layer computes.

``gate_bias`` (layers and steppers): an extra (B, gates, H, W) map added to the input-to-state gates; the
Multi-Scale PixelRNN's conditional network feeds its upsampled small image this way (``models/multiscale.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelmodels.nn.cache import pointwise_weight
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


class InitialState(nn.Module):
    """A learned (hidden, cell) pair of ``units`` vectors, broadcast to (B, units, L); zeros at initialisation."""

    def __init__(self, units: int):
        super().__init__()
        self.state = nn.Parameter(torch.zeros(2, units))  # [hidden, cell]

    def forward(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, cell = self.state[:, None, :, None].expand(2, batch, -1, length)  # each (B, units, L)
        return hidden, cell


def zero_or_learned(
    init: InitialState | None, batch: int, units: int, length: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial (hidden, cell), each (B, units, L): learned if ``init`` is set, else zeros."""
    if init is not None:
        return init(batch, length)
    return like.new_zeros(batch, units, length), like.new_zeros(batch, units, length)


class RowLSTMLayer(nn.Module):
    """Row LSTM (section 3.1): (B, 2h, H, W) -> hidden states (B, h, H, W), one LSTM step per row.

    The input-to-state part is a 1x3 mask-B convolution computed for the whole map at once; the state-to-state
    part an unmasked 1x3 convolution over the previous row's hidden state. ``up`` (1x1, h -> 2h) maps the output
    back to the residual stream (section 3.3); the trunk applies it.
    """

    def __init__(self, hidden_channels: int, groups: int, learned_init: bool = False):
        super().__init__()
        h = hidden_channels
        self.hidden_channels = h
        self.input_to_state = GateConv2d(2 * h, h, (1, 3), "B", groups)
        self.state_to_state = nn.Conv1d(h, 4 * h, 3, padding=1, bias=False)  # over the previous row, unmasked
        self.up = MaskedConv2d(h, 2 * h, 1, "B", groups)
        self.init = InitialState(h) if learned_init else None  # the state of row -1

    def forward(
        self, x: torch.Tensor, image: torch.Tensor | None = None, gate_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``image`` is unused (the Diagonal BiLSTM layer's call signature); ``gate_bias`` (B, 4h, H, W), if
        given, is added to the input-to-state map (a conditioning map, Multi-Scale PixelRNN, section 3.6)."""
        gates_in = self.input_to_state(x)  # (B, 4h, H, W), all rows at once
        if gate_bias is not None:
            gates_in = gates_in + gate_bias
        b, _, height, width = gates_in.shape
        hidden, cell = zero_or_learned(self.init, b, self.hidden_channels, width, x)  # (B, h, W): row -1
        rows = []
        for i in range(height):
            hidden, cell = lstm_cell(gates_in[:, :, i] + self.state_to_state(hidden), cell)  # (B, h, W)
            rows.append(hidden)
        return torch.stack(rows, dim=2)  # (B, h, H, W)

    def stepper(self, batch: int, width: int, gate_bias: torch.Tensor | None = None) -> RowLSTMStepper:
        return RowLSTMStepper(self, batch, width, gate_bias)


class RowLSTMStepper:
    """``RowLSTMLayer`` one pixel at a time (see the module docstring for the driving protocol)."""

    def __init__(self, layer: RowLSTMLayer, batch: int, width: int, gate_bias: torch.Tensor | None = None):
        h = layer.hidden_channels
        self.layer, self.gate_bias = layer, gate_bias
        self.weight = (layer.input_to_state.weight * layer.input_to_state.mask)[:, :, 0]  # (4h, 2h, 3)
        self.bias = layer.input_to_state.bias
        like = self.weight
        self.inputs = like.new_zeros(batch, 2 * h, width + 2)  # this row's layer inputs, zero-padded
        self.hidden, self.cell = (s.contiguous() for s in zero_or_learned(layer.init, batch, h, width, like))
        self.new_hidden = like.new_zeros(batch, h, width)  # this row, filled pixel by pixel
        self.new_cell = like.new_zeros(batch, h, width)
        self.state_gates = like.new_zeros(batch, 4 * h, width)  # the previous row's contribution

    def start_row(self, i: int) -> None:
        self.state_gates = self.layer.state_to_state(self.hidden)  # (B, 4h, W), once per row
        if self.gate_bias is not None:
            self.state_gates = self.state_gates + self.gate_bias[:, :, i]

    def step(self, w: int, v: torch.Tensor) -> torch.Tensor:
        """Layer input at (current row, w), (B, 2h) -> the layer's output there, (B, h)."""
        self.inputs[:, :, w + 1] = v  # column w of the padded row
        gates = F.conv1d(self.inputs[:, :, w : w + 3], self.weight, self.bias)[:, :, 0]  # (B, 4h)
        hidden, cell = lstm_cell(gates + self.state_gates[:, :, w], self.cell[:, :, w])
        self.new_hidden[:, :, w] = hidden
        self.new_cell[:, :, w] = cell
        return hidden

    def end_row(self, i: int, image_row: torch.Tensor) -> None:
        self.hidden, self.new_hidden = self.new_hidden, self.hidden
        self.cell, self.new_cell = self.new_cell, self.cell


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM (section 3.2): skew, column-wise LSTM, unskew."""

    def __init__(self, hidden_channels: int, groups: int, learned_init: bool = False):
        super().__init__()
        h = hidden_channels
        self.hidden_channels = h
        self.input_to_state = GateConv2d(2 * h, h, 1, "B", groups)
        # taps: (row i - 1, column j - 1) and (row i, column j - 1) of the skewed map = the pixel above and
        # the pixel to the left in the image. No bias, so the zero-padded skew keeps exactly zero state.
        self.state_to_state = nn.Conv1d(h, 4 * h, 2, bias=False)
        self.init = InitialState(h) if learned_init else None  # the state left of every row's first pixel

    def forward(self, x: torch.Tensor, extra_gates: torch.Tensor | None = None) -> torch.Tensor:
        width = x.shape[3]
        gates_in = self.input_to_state(x)  # (B, 4h, H, W)
        if extra_gates is not None:
            gates_in = gates_in + extra_gates
        gates_in = skew(gates_in)  # (B, 4h, H, W + H - 1); zeros off the image
        b, _, height, columns = gates_in.shape
        hidden, cell = zero_or_learned(self.init, b, self.hidden_channels, height, x)  # (B, h, H): column -1
        rows = torch.arange(height, device=x.device)
        states = []
        for j in range(columns):
            above_and_here = F.pad(hidden, (1, 0))  # (B, h, H + 1): row -1 is zero
            hidden, cell = lstm_cell(gates_in[:, :, :, j] + self.state_to_state(above_and_here), cell)
            if self.init is not None and j < height - 1:  # rows i > j have not reached the image yet
                before_image = rows > j  # (H,)
                init_h, init_c = self.init(b, height)
                hidden = torch.where(before_image, init_h, hidden)
                cell = torch.where(before_image, init_c, cell)
            states.append(hidden)
        return unskew(torch.stack(states, dim=3), width)  # (B, h, H, W)

    def taps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The state-to-state weights as two (4h, h) matrices: [from the pixel above, from the previous pixel]."""
        weight = self.state_to_state.weight  # (4h, h, 2)
        return weight[:, :, 0], weight[:, :, 1]


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM (section 3.2): (B, 2h, H, W) -> (B, h, H, W), the right-to-left part shifted down.

    ``image_channels`` > 0 (``full_context``, see ``models.pixelrnn``): the right-to-left direction also reads
    the image itself through a bias-free 1x1 convolution, unmasked (its output only reaches the next row).
    """

    def __init__(self, hidden_channels: int, groups: int, image_channels: int = 0, learned_init: bool = False):
        super().__init__()
        h = hidden_channels
        self.hidden_channels = h
        self.left = DiagonalLSTM(h, groups, learned_init)  # runs left to right
        self.right = DiagonalLSTM(h, groups, learned_init)  # runs right to left (on the mirrored map)
        self.up = MaskedConv2d(h, 2 * h, 1, "B", groups)
        self.image_to_right = nn.Conv2d(image_channels, 4 * h, 1, bias=False) if image_channels else None

    def forward(
        self, x: torch.Tensor, image: torch.Tensor | None = None, gate_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``gate_bias`` (B, 8h, H, W), if given, is added to the input-to-state maps: the first 4h channels to
        the left-to-right direction's, the rest to the right-to-left one's (in image coordinates)."""
        left_bias, right_bias = (None, None) if gate_bias is None else gate_bias.chunk(2, dim=1)
        extra = None if self.image_to_right is None else self.image_to_right(image)  # (B, 4h, H, W)
        if right_bias is not None:
            extra = right_bias if extra is None else extra + right_bias
        extra = None if extra is None else extra.flip(3)  # the right-to-left direction runs on the mirrored map
        right = self.right(x.flip(3), extra).flip(3)  # (B, h, H, W): sees row i at and right of each pixel
        right = F.pad(right, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row: row i gets row i - 1
        return self.left(x, left_bias) + right

    def stepper(self, batch: int, width: int, gate_bias: torch.Tensor | None = None) -> DiagonalBiLSTMStepper:
        return DiagonalBiLSTMStepper(self, batch, width, gate_bias)


class DiagonalBiLSTMStepper:
    """``DiagonalBiLSTMLayer`` one pixel at a time (see the module docstring for the driving protocol)."""

    def __init__(self, layer: DiagonalBiLSTMLayer, batch: int, width: int, gate_bias: torch.Tensor | None = None):
        h = layer.hidden_channels
        self.layer, self.row = layer, 0
        self.left_bias, self.right_bias = (None, None) if gate_bias is None else gate_bias.chunk(2, dim=1)
        like = layer.up.weight
        self.left_in = pointwise_weight(layer.left.input_to_state), layer.left.input_to_state.bias
        self.left_taps, self.right_taps = layer.left.taps(), layer.right.taps()
        self.left_init = tuple(s[:, :, 0] for s in zero_or_learned(layer.left.init, batch, h, 1, like))  # (B, h)
        self.right_init = tuple(s[:, :, 0] for s in zero_or_learned(layer.right.init, batch, h, 1, like))
        self.inputs = like.new_zeros(batch, 2 * h, width)  # this row's layer inputs
        self.hidden = like.new_zeros(batch, h, width)  # left-to-right, previous row (row -1: zero, as the pad)
        self.new_hidden = like.new_zeros(batch, h, width)  # left-to-right, this row
        self.new_cell = like.new_zeros(batch, h, width)
        self.right = like.new_zeros(batch, h, width)  # right-to-left output of the previous row

    def start_row(self, i: int) -> None:
        self.row = i

    def step(self, w: int, v: torch.Tensor) -> torch.Tensor:
        """Layer input at (current row, w), (B, 2h) -> the layer's output there, (B, h)."""
        self.inputs[:, :, w] = v
        above_w, left_w = self.left_taps
        left_h, left_c = self.left_init if w == 0 else (self.new_hidden[:, :, w - 1], self.new_cell[:, :, w - 1])
        gates = F.linear(v, *self.left_in) + F.linear(self.hidden[:, :, w], above_w) + F.linear(left_h, left_w)
        if self.left_bias is not None:
            gates = gates + self.left_bias[:, :, self.row, w]
        hidden, cell = lstm_cell(gates, left_c)  # (B, h)
        self.new_hidden[:, :, w] = hidden
        self.new_cell[:, :, w] = cell
        return hidden + self.right[:, :, w]  # plus right-to-left from row i - 1 (the shift down)

    def end_row(self, i: int, image_row: torch.Tensor) -> None:
        """Row i is complete (``image_row``: its scaled values (B, C, W)): run the right-to-left direction over
        it, for use (shifted down) by row i + 1."""
        layer = self.layer
        gates_in = layer.right.input_to_state(self.inputs.unsqueeze(2))[:, :, 0]  # (B, 4h, W)
        if layer.image_to_right is not None:
            gates_in = gates_in + layer.image_to_right(image_row.unsqueeze(2))[:, :, 0]
        if self.right_bias is not None:
            gates_in = gates_in + self.right_bias[:, :, i]
        above_w, right_w = self.right_taps
        above = self.right  # (B, h, W), row i - 1
        new = torch.zeros_like(above)
        hidden, cell = self.right_init
        for w in reversed(range(new.shape[2])):
            gates = gates_in[:, :, w] + F.linear(above[:, :, w], above_w) + F.linear(hidden, right_w)
            hidden, cell = lstm_cell(gates, cell)  # (B, h)
            new[:, :, w] = hidden
        self.right = new
        self.hidden, self.new_hidden = self.new_hidden, self.hidden
