"""PixelRNN: Row LSTM and Diagonal BiLSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent
Neural Networks", ICML).

Shared trunk (Table 1, section 3.3, Figure 4):
- a 7x7 convolution with mask A from the image to 2h features;
- ``num_layers`` recurrent layers with residual connections: the layer reads the 2h-feature map, its
  input-to-state convolution emits h units per gate, the LSTM runs, a 1x1 convolution maps the h outputs back
  to 2h and the layer input is added (section 3.3);
- learnable skip connections from every layer to the output (section 3.3; a 1x1 conv per layer, summed);
- ReLU + 1x1 mask-B convolutions into the head (``pixelcnn.output_stack``; 256-way softmax in the paper).
Every convolution that reads the current pixel is masked with R -> G -> B channel groups (section 3.4); the
gates of unit j carry unit j's colour group (``nn.recurrent.GateConv2d``).

Row LSTM (section 3.1): rows are processed top to bottom. The input-to-state part is a 1x3 mask-B convolution
computed for the whole map at once; the state-to-state part is an unmasked 1x3 convolution over the previous
row's hidden state. A pixel sees a triangle above it (it widens by one pixel per row up), plus a few pixels to
its left: pixels far up-right stay out of reach.

Diagonal BiLSTM (section 3.2, Figure 3): the input-to-state 1x1 mask-B convolution is skewed (row i shifted
right by i), a column-wise LSTM runs over the W + H - 1 columns with a 2x1 state-to-state convolution (in image
coordinates: the states of the pixel above and of the pixel to the left), and the result is unskewed. The
right-to-left direction runs on the mirrored map; its output is shifted down one row before it is added, so
a pixel sees the full row above (and everything above that) but no pixel to its right in its own row. The
receptive field is the full causal context, without blind spot (see "Deviations" for the one pixel the
paper's layer misses and how ``full_context`` restores it).

Incremental sampling (``fast_sample``; the paper gives no sampler, this is ours). Each step computes only the
current pixel's column through all layers, from cached state; the results equal a full forward pass:
- Row LSTM caches, per layer, the previous row's hidden and cell states (and their state-to-state
  convolution, once per row) and the current row's layer inputs left of the pixel.
- Diagonal BiLSTM: the left-to-right direction is cached like a raster-order recurrence: the state at (i, w)
  needs only the states at (i - 1, w) and (i, w - 1), both already computed. The right-to-left direction
  cannot be advanced pixel by pixel: its state at (i, w) depends on every pixel right of w in row i, which do
  not exist yet. Because its output is shifted down one row, row i only needs it for row i - 1, so it is
  computed once per completed row (a right-to-left sweep over the finished row's cached layer inputs, per
  layer) and used by the whole next row. Nothing is recomputed; the cost per image is O(H * W * layers)
  cell updates for each direction, against O((H * W)^2 * layers) for the naive sampler.
Within a pixel, features of colour group g depend only on channels < g of that pixel (mask A first), so the
pass computed for the last channel already holds the pixel's final features; nothing is recomputed when the
pixel is complete.

Paper hyper-parameters (section 5.2 and Tables 4, 5; ``PAPER_CONFIGS`` below):
- binarized MNIST: Diagonal BiLSTM, 7 layers, h = 16: 79.20 nats (Table 4). The paper reports no Row LSTM on
  MNIST; our Row LSTM preset uses the same 7 layers, h = 16.
- CIFAR-10: Row LSTM and Diagonal BiLSTM, 12 layers, h = 128: 3.07 and 3.00 bits/dim (Table 5).
- CPU-sized variants: 2 layers, h = 16 (binarized MNIST) and 4 layers, h = 32 (RGB).

Deviations from the paper:
- ``hidden_channels`` is h; the residual stream carries 2h features. ``output_channels`` (the first 1x1 output
  layer) defaults to 2h; the paper does not give that width for the LSTMs.
- The state-to-state convolutions have no bias (the input-to-state one has it), so zero-padded regions of the
  skewed map keep exactly zero state.
- Skip connections are 1x1 mask-B convolutions of each layer's output, summed (``skip_connections=False``
  feeds the last layer's output to the head instead).
- Diagonal BiLSTM, ``full_context=True`` (default): the paper's layer leaves one pixel out of the context of
  most pixels: the last pixel of the previous row, (i - 1, W - 1), is not seen from (i, w) when
  w < W - 1 - k // 2 (k = ``first_kernel_size``). Every feature of row i - 1 comes out of the mask-A stack and
  so never holds that pixel's value, and row i reaches row i - 1 only through those features (the shifted
  right-to-left output), the k x k input convolution (k // 2 columns right) and the left-to-right quadrant
  (columns <= w). We add a bias-free 1x1 convolution from the image to the first layer's right-to-left gates
  (unmasked: that direction's output only reaches the next row), which closes the gap.
  ``full_context=False`` is the paper's layer; tests check both receptive fields.
- The multi-scale PixelRNN (section 3.6) is not implemented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.models.pixelcnn import output_stack
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.recurrent import GateConv2d, lstm_cell, pointwise, skew, unskew
from pixelmodels.registry import register
from pixelmodels.sampling import initial_canvas

# The paper's configurations (section 5.2, Tables 4 and 5) and CPU-sized variants, as build() keywords.
PAPER_CONFIGS: dict[str, dict] = {
    "diagonal_bilstm_binarized_mnist": dict(model="diagonal_bilstm", hidden_channels=16, num_layers=7),  # 79.20 nats
    "row_lstm_binarized_mnist": dict(model="row_lstm", hidden_channels=16, num_layers=7),  # not in the paper
    "row_lstm_cifar10": dict(model="row_lstm", hidden_channels=128, num_layers=12),  # 3.07 bits/dim
    "diagonal_bilstm_cifar10": dict(model="diagonal_bilstm", hidden_channels=128, num_layers=12),  # 3.00 bits/dim
    "row_lstm_binarized_mnist_small": dict(model="row_lstm", hidden_channels=16, num_layers=2),
    "diagonal_bilstm_binarized_mnist_small": dict(model="diagonal_bilstm", hidden_channels=16, num_layers=2),
    "row_lstm_cifar10_small": dict(model="row_lstm", hidden_channels=32, num_layers=4),
    "diagonal_bilstm_cifar10_small": dict(model="diagonal_bilstm", hidden_channels=32, num_layers=4),
}


class RowLSTMLayer(nn.Module):
    """Row LSTM (section 3.1): (B, 2h, H, W) -> hidden states (B, h, H, W), one LSTM step per row."""

    def __init__(self, hidden_channels: int, groups: int):
        super().__init__()
        h = hidden_channels
        self.input_to_state = GateConv2d(2 * h, h, (1, 3), "B", groups)
        self.state_to_state = nn.Conv1d(h, 4 * h, 3, padding=1, bias=False)  # over the previous row, unmasked
        self.up = MaskedConv2d(h, 2 * h, 1, "B", groups)  # back to 2h for the residual (section 3.3)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` is unused (the Diagonal BiLSTM layer's call signature)."""
        gates_in = self.input_to_state(x)  # (B, 4h, H, W), all rows at once
        b, _, height, width = gates_in.shape
        hidden = x.new_zeros(b, gates_in.shape[1] // 4, width)  # (B, h, W): row -1
        cell = torch.zeros_like(hidden)
        rows = []
        for i in range(height):
            hidden, cell = lstm_cell(gates_in[:, :, i] + self.state_to_state(hidden), cell)  # (B, h, W)
            rows.append(hidden)
        return torch.stack(rows, dim=2)  # (B, h, H, W)


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM (section 3.2): skew, column-wise LSTM, unskew."""

    def __init__(self, hidden_channels: int, groups: int):
        super().__init__()
        h = hidden_channels
        self.input_to_state = GateConv2d(2 * h, h, 1, "B", groups)
        # taps: (row i - 1, column j - 1) and (row i, column j - 1) of the skewed map = the pixel above and
        # the pixel to the left in the image.
        self.state_to_state = nn.Conv1d(h, 4 * h, 2, bias=False)

    def forward(self, x: torch.Tensor, extra_gates: torch.Tensor | None = None) -> torch.Tensor:
        width = x.shape[3]
        gates_in = self.input_to_state(x)  # (B, 4h, H, W)
        if extra_gates is not None:
            gates_in = gates_in + extra_gates
        gates_in = skew(gates_in)  # (B, 4h, H, W + H - 1); zeros off the image
        b, _, height, columns = gates_in.shape
        hidden = x.new_zeros(b, gates_in.shape[1] // 4, height)  # (B, h, H): column -1
        cell = torch.zeros_like(hidden)
        states = []
        for j in range(columns):
            above_and_here = F.pad(hidden, (1, 0))  # (B, h, H + 1): row -1 is zero
            hidden, cell = lstm_cell(gates_in[:, :, :, j] + self.state_to_state(above_and_here), cell)
            states.append(hidden)
        return unskew(torch.stack(states, dim=3), width)  # (B, h, H, W)


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM (section 3.2): (B, 2h, H, W) -> (B, h, H, W), the right-to-left part shifted down."""

    def __init__(self, hidden_channels: int, groups: int, image_channels: int = 0):
        super().__init__()
        h = hidden_channels
        self.left = DiagonalLSTM(h, groups)  # runs left to right
        self.right = DiagonalLSTM(h, groups)  # runs right to left (on the mirrored map)
        self.up = MaskedConv2d(h, 2 * h, 1, "B", groups)
        # full_context: the right-to-left direction also reads the image itself, unmasked (its output only
        # reaches the next row), so the last pixel of a row is not lost to every pixel of the next row.
        self.image_to_right = nn.Conv2d(image_channels, 4 * h, 1, bias=False) if image_channels else None

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        extra = None if self.image_to_right is None else self.image_to_right(image.flip(3))  # (B, 4h, H, W)
        right = self.right(x.flip(3), extra).flip(3)  # (B, h, H, W): sees row i at and right of each pixel
        right = F.pad(right, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row: row i gets row i - 1
        return self.left(x) + right


class PixelRNN(AutoregressiveModel):
    """Shared trunk of Row LSTM and Diagonal BiLSTM (not registered; see the two subclasses)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 16,
        num_layers: int = 7,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        skip_connections: bool = True,
        head: str = "categorical",
    ):
        super().__init__(image_shape, num_levels, head)
        c = self.image_shape[0]
        groups = self.colour_groups(hidden_channels)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.first_kernel_size = first_kernel_size
        self.output_channels = output_channels
        self.skip_connections = skip_connections
        h = hidden_channels
        self.input_conv = MaskedConv2d(c, 2 * h, first_kernel_size, "A", groups)
        self.layers = nn.ModuleList(self._make_layer(i, h, groups) for i in range(num_layers))
        if skip_connections:
            self.skips = nn.ModuleList(MaskedConv2d(2 * h, 2 * h, 1, "B", groups) for _ in range(num_layers))
        self.output = output_stack(2 * h, output_channels or 2 * h, self.head.num_params, groups)

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.input_conv(inputs)  # (B, 2h, H, W)
        skip = 0.0
        for i, layer in enumerate(self.layers):
            x = x + layer.up(layer(x, inputs))  # residual connection (section 3.3)
            if self.skip_connections:
                skip = skip + self.skips[i](x)  # (B, 2h, H, W)
        return self.output(skip if self.skip_connections else x)  # (B, P, H, W)

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
        raise NotImplementedError

    # ----- incremental sampler: the subclasses provide the per-layer cache -----------------------------------
    def _new_cache(self, n: int, like: torch.Tensor) -> dict:
        raise NotImplementedError

    def _start_row(self, cache: dict, i: int) -> None:
        pass

    def _end_row(self, cache: dict, i: int) -> None:
        pass

    def _layer_step(self, cache: dict, layer: int, w: int, v: torch.Tensor) -> torch.Tensor:
        """Layer ``layer`` at pixel (current row, w): its input features (n, 2h) -> its output (n, h)."""
        raise NotImplementedError

    @torch.no_grad()
    def fast_sample(
        self,
        n: int,
        cond=None,
        known=None,
        known_mask=None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        trace: list | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling in raster order from cached recurrent state (see the module docstring).

        ``trace``: if a list, receives ``(step_index, params (n, P))`` for every step.
        """
        device = next(self.parameters()).device
        x = initial_canvas(self, n, known, known_mask, device)  # (n, C, H, W)
        k = self.first_kernel_size
        p = k // 2
        canvas = F.pad(self.scale_input(x), (p, p, p, p))  # (n, C, H + 2p, W + 2p), zero padding as the conv
        first_weight = self.input_conv.weight * self.input_conv.mask
        ups = [pointwise(layer.up) for layer in self.layers]
        skips = [pointwise(s) for s in self.skips] if self.skip_connections else None
        out_hidden, out_params = pointwise(self.output[1]), pointwise(self.output[3])
        cache = self._new_cache(n, canvas)
        cache["image"] = canvas[:, :, p : p + self.image_shape[1], p : p + self.image_shape[2]]  # a view: live
        row = -1
        for step, (i, w, channels) in enumerate(tqdm(self.order(), disable=not progress, desc="sampling")):
            if i != row:
                if row >= 0:
                    self._end_row(cache, row)
                row = i
                self._start_row(cache, i)
            v = F.conv2d(canvas[:, :, i : i + k, w : w + k], first_weight, self.input_conv.bias)[:, :, 0, 0]
            skip = 0.0
            for layer in range(self.num_layers):
                v = v + ups[layer](self._layer_step(cache, layer, w, v))  # (n, 2h)
                if skips is not None:
                    skip = skip + skips[layer](v)
            params = out_params(F.relu(out_hidden(F.relu(v if skips is None else skip))))  # (n, P)
            if trace is not None:
                trace.append((step, params.clone()))
            keep = None if known_mask is None else known_mask[:, :, i, w]
            x[:, :, i, w] = self.head.sample(params.float(), x[:, :, i, w], channels, keep, temperature, generator)
            canvas[:, :, p + i, p + w] = self.scale_input(x[:, :, i, w])
        return x


@register("row_lstm")
class RowLSTM(PixelRNN):
    """Row LSTM (PixelRNN paper, section 3.1): row-by-row LSTM layers with residual connections.

    Args:
        image_shape: (C, H, W).
        num_levels: K, values per sub-pixel.
        hidden_channels: h, LSTM units per layer (the residual stream carries 2h features).
        num_layers: number of Row LSTM layers.
        first_kernel_size: the mask-A input convolution size (7 in the paper).
        output_channels: width of the hidden 1x1 output layer (default 2h).
        skip_connections: sum 1x1 convs of every layer's output into the head (section 3.3).
        head: output distribution ("categorical").
    """

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
        return RowLSTMLayer(hidden_channels, groups)

    def _new_cache(self, n: int, like: torch.Tensor) -> dict:
        h, width, layers = self.hidden_channels, self.image_shape[2], self.num_layers
        zeros = like.new_zeros
        return {
            "inputs": [zeros(n, 2 * h, width + 2) for _ in range(layers)],  # this row's layer inputs, padded
            "hidden": [zeros(n, h, width) for _ in range(layers)],  # previous row
            "cell": [zeros(n, h, width) for _ in range(layers)],
            "new_hidden": [zeros(n, h, width) for _ in range(layers)],  # this row, filled pixel by pixel
            "new_cell": [zeros(n, h, width) for _ in range(layers)],
            "state_gates": [None] * layers,
            "weights": [(lay.input_to_state.weight * lay.input_to_state.mask)[:, :, 0] for lay in self.layers],
        }

    def _start_row(self, cache: dict, i: int) -> None:
        for layer, module in enumerate(self.layers):  # the previous row's contribution, once per row
            cache["state_gates"][layer] = module.state_to_state(cache["hidden"][layer])  # (n, 4h, W)

    def _end_row(self, cache: dict, i: int) -> None:
        cache["hidden"], cache["new_hidden"] = cache["new_hidden"], cache["hidden"]
        cache["cell"], cache["new_cell"] = cache["new_cell"], cache["cell"]

    def _layer_step(self, cache: dict, layer: int, w: int, v: torch.Tensor) -> torch.Tensor:
        inputs = cache["inputs"][layer]
        inputs[:, :, w + 1] = v  # column w of the padded row
        bias = self.layers[layer].input_to_state.bias
        gates = F.conv1d(inputs[:, :, w : w + 3], cache["weights"][layer], bias)[:, :, 0]  # (n, 4h)
        hidden, cell = lstm_cell(gates + cache["state_gates"][layer][:, :, w], cache["cell"][layer][:, :, w])
        cache["new_hidden"][layer][:, :, w] = hidden
        cache["new_cell"][layer][:, :, w] = cell
        return hidden  # (n, h)


@register("diagonal_bilstm")
class DiagonalBiLSTM(PixelRNN):
    """Diagonal BiLSTM (PixelRNN paper, section 3.2): skewed column-wise LSTMs in two directions.

    Args: as ``RowLSTM``, and
        full_context: the first layer's right-to-left direction also reads the image (see "Deviations");
            False is the paper's layer, which never lets pixel (i, W - 1) reach (i + 1, w) for small w.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 16,
        num_layers: int = 7,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        skip_connections: bool = True,
        full_context: bool = True,
        head: str = "categorical",
    ):
        self.full_context = full_context  # read by _make_layer during the base constructor
        super().__init__(
            image_shape,
            num_levels,
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            first_kernel_size=first_kernel_size,
            output_channels=output_channels,
            skip_connections=skip_connections,
            head=head,
        )

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
        image_channels = self.image_shape[0] if self.full_context and index == 0 else 0
        return DiagonalBiLSTMLayer(hidden_channels, groups, image_channels)

    def _new_cache(self, n: int, like: torch.Tensor) -> dict:
        h, width, layers = self.hidden_channels, self.image_shape[2], self.num_layers
        zeros = like.new_zeros

        def taps(lstm: DiagonalLSTM) -> tuple[torch.Tensor, torch.Tensor]:
            weight = lstm.state_to_state.weight  # (4h, h, 2): [above, left (right when mirrored)]
            return weight[:, :, 0], weight[:, :, 1]

        return {
            "inputs": [zeros(n, 2 * h, width) for _ in range(layers)],  # this row's layer inputs
            "hidden": [zeros(n, h, width) for _ in range(layers)],  # left-to-right, previous row
            "new_hidden": [zeros(n, h, width) for _ in range(layers)],  # left-to-right, this row
            "new_cell": [zeros(n, h, width) for _ in range(layers)],
            "right": [zeros(n, h, width) for _ in range(layers)],  # right-to-left, previous row
            "zero": zeros(n, h),
            "left_in": [pointwise(lay.left.input_to_state) for lay in self.layers],
            "left_taps": [taps(lay.left) for lay in self.layers],
            "right_taps": [taps(lay.right) for lay in self.layers],
        }

    def _end_row(self, cache: dict, i: int) -> None:
        """Row i is complete: run the right-to-left direction over it, for use (shifted down) by row i + 1."""
        for layer, module in enumerate(self.layers):
            gates_in = module.right.input_to_state(cache["inputs"][layer].unsqueeze(2))[:, :, 0]  # (n, 4h, W)
            if module.image_to_right is not None:
                gates_in = gates_in + module.image_to_right(cache["image"][:, :, i : i + 1])[:, :, 0]
            above_w, right_w = cache["right_taps"][layer]
            above = cache["right"][layer]  # (n, h, W), row i - 1
            new = torch.zeros_like(above)
            hidden = cell = cache["zero"]
            for w in reversed(range(new.shape[2])):
                gates = gates_in[:, :, w] + F.linear(above[:, :, w], above_w) + F.linear(hidden, right_w)
                hidden, cell = lstm_cell(gates, cell)  # (n, h)
                new[:, :, w] = hidden
            cache["right"][layer] = new
        cache["hidden"], cache["new_hidden"] = cache["new_hidden"], cache["hidden"]

    def _layer_step(self, cache: dict, layer: int, w: int, v: torch.Tensor) -> torch.Tensor:
        cache["inputs"][layer][:, :, w] = v
        above_w, left_w = cache["left_taps"][layer]
        left_h = cache["new_hidden"][layer][:, :, w - 1] if w > 0 else cache["zero"]
        left_c = cache["new_cell"][layer][:, :, w - 1] if w > 0 else cache["zero"]
        gates = (
            cache["left_in"][layer](v) + F.linear(cache["hidden"][layer][:, :, w], above_w) + F.linear(left_h, left_w)
        )
        hidden, cell = lstm_cell(gates, left_c)  # (n, h)
        cache["new_hidden"][layer][:, :, w] = hidden
        cache["new_cell"][layer][:, :, w] = cell
        return hidden + cache["right"][layer][:, :, w]  # plus right-to-left from row i - 1 (the shift down)
