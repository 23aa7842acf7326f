"""PixelRNN: Row LSTM and Diagonal BiLSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent
Neural Networks", ICML; arXiv 1601.06759v3).

Shared trunk (Table 1; sections 3.3 and 4, Figure 5):
- a 7x7 convolution with mask A from the image to 2h features;
- ``num_layers`` recurrent layers with residual connections: the layer reads the 2h-feature map, its
  input-to-state convolution emits h units per gate, the LSTM runs, a 1x1 convolution maps the h outputs back
  to 2h and the layer input is added (section 3.3; ``residual=False`` drops the addition, as the paper's 4-layer
  64x64 ImageNet model does, section 4);
- learnable layer-to-output (skip) connections from every layer to the output (sections 3.3 and 4; a 1x1 conv
  per layer, summed);
- ReLU + 1x1 mask-B convolutions into the head (``pixelcnn.output_stack``; 256-way softmax in the paper). The
  hidden output layer is ``output_channels`` wide: the paper uses 1024 for CIFAR-10 and ImageNet, 32 for MNIST
  (section 4).
Every convolution that reads the current pixel is masked with R -> G -> B channel groups (section 3.4); the
gates of unit j carry unit j's colour group (``nn.recurrent.GateConv2d``). The layers and their incremental
steppers live in ``pixelmodels.nn.recurrent``.

Row LSTM (section 3.1): rows are processed top to bottom; a pixel sees a triangle above it (it widens by one
pixel per row up), plus a few pixels to its left: pixels far up-right stay out of reach.

Diagonal BiLSTM (section 3.2, Figure 3): skewed column-wise LSTMs in two directions; the right-to-left output
is shifted down one row, so a pixel sees the full row above (and everything above that) but no pixel to its
right in its own row: the full causal context, without blind spot (see "Deviations" for the one pixel the
paper's layer misses and how ``full_context`` restores it).

``fast_sample`` (ours; the paper gives no sampler) steps every layer one pixel at a time from cached state
(``RowLSTMStepper`` / ``DiagonalBiLSTMStepper``) inside the generic ``sampling.cached_sample`` loop; every step's
parameters equal a full forward pass.

Paper hyper-parameters (section 4; results in Tables 4-6), as presets in ``training/presets.py``:
- binarized MNIST: Diagonal BiLSTM, 7 layers, h = 16: 79.20 nats; Row LSTM 80.54 nats (Table 4; the paper gives
  the Row LSTM's size nowhere, our preset uses the Diagonal BiLSTM's);
- CIFAR-10: Row LSTM and Diagonal BiLSTM, 12 layers, h = 128: 3.07 and 3.00 bits/dim (Table 5);
- ImageNet 32x32: Row LSTM, 12 layers, h = 384 (3.86 bits/dim); 64x64: Row LSTM, 4 layers, h = 512, no
  residual connections (3.63; Table 6);
- RMSProp, batch 16 (MNIST, CIFAR-10), 64 (ImageNet 32x32), 32 (ImageNet 64x64) (section 5.2).

Widths (``widths``): ``hidden_channels`` is h, the LSTM units per layer and direction; the residual stream and
the skip connections carry 2h features; the hidden output layer ``output_channels`` (default 2h).

Deviations from the paper:
- ``output_channels`` defaults to 2h (the paper presets set 1024 or 32, section 4).
- The state-to-state convolutions have no bias (the input-to-state one has it), so zero-padded regions of the
  skewed map keep exactly zero state.
- ``learned_init`` (default False; True in the paper presets): the paper learns the initial state; ours is one
  learned vector per layer and direction, see ``nn.recurrent``. With False the initial state is zero.
- Diagonal BiLSTM, ``full_context=True`` (default; the paper presets pin False, the paper's layer): the paper's
  layer leaves one pixel out of the context of most pixels: the last pixel of the previous row, (i - 1, W - 1),
  is not seen from (i, w) when w < W - 1 - k // 2 (k = ``first_kernel_size``). Every feature of row i - 1 comes
  out of the mask-A stack and so never holds that pixel's value, and row i reaches row i - 1 only through those
  features (the shifted right-to-left output), the k x k input convolution (k // 2 columns right) and the
  left-to-right quadrant (columns <= w). We add a bias-free 1x1 convolution from the image to the first layer's
  right-to-left gates (unmasked: that direction's output only reaches the next row), which closes the gap.
  Tests check both receptive fields.
- The multi-scale PixelRNN (section 3.6) is in ``models/multiscale.py`` (its conditional network reads the
  upsampled small image through ``conditioned_network``'s per-layer gate biases).
"""

from __future__ import annotations

import torch
from torch import nn

from pixelmodels import sampling
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.models.pixelcnn import output_stack
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.cache import PixelRunner
from pixelmodels.nn.recurrent import DiagonalBiLSTMLayer, RowLSTMLayer
from pixelmodels.registry import register


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
        residual: bool = True,
        learned_init: bool = False,
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
        self.residual = residual
        self.learned_init = learned_init
        h = hidden_channels
        self.input_conv = MaskedConv2d(c, 2 * h, first_kernel_size, "A", groups)
        self.layers = nn.ModuleList(self._make_layer(i, h, groups) for i in range(num_layers))
        if skip_connections:
            self.skips = nn.ModuleList(MaskedConv2d(2 * h, 2 * h, 1, "B", groups) for _ in range(num_layers))
        self.output = output_stack(2 * h, output_channels or 2 * h, self.head.num_params, groups)

    @property
    def widths(self) -> dict[str, int]:
        """The feature widths ``hidden_channels`` (h) sets, by name."""
        h = self.hidden_channels
        return {"LSTM units (h)": h, "residual stream (2h)": 2 * h, "output layer": self.output[1].out_channels}

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.conditioned_network(inputs)

    def conditioned_network(self, inputs: torch.Tensor, gate_biases: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``network`` with, optionally, one bias per layer added to its input-to-state gates (B, gates, H, W):
        how Multi-Scale PixelRNN's conditional network reads its upsampled map (section 3.6)."""
        x = self.input_conv(inputs)  # (B, 2h, H, W)
        skip = 0.0
        for i, layer in enumerate(self.layers):
            out = layer.up(layer(x, inputs, None if gate_biases is None else gate_biases[i]))  # (B, 2h, H, W)
            x = x + out if self.residual else out  # residual connection (section 3.3)
            if self.skip_connections:
                skip = skip + self.skips[i](x)  # (B, 2h, H, W)
        return self.output(skip if self.skip_connections else x)  # (B, P, H, W)

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
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
        """Ancestral sampling in raster order, every layer stepped one pixel at a time from cached state.

        ``trace``: if a list, receives ``(step_index, params (n, P))`` for every step.
        """
        return self.conditioned_sample(n, known, known_mask, None, temperature, generator, progress, trace)

    @torch.no_grad()
    def conditioned_sample(
        self,
        n: int,
        known: torch.Tensor | None,
        known_mask: torch.Tensor | None,
        gate_biases: list[torch.Tensor] | None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        trace: list | None = None,
    ) -> torch.Tensor:
        """``fast_sample`` from ``conditioned_network`` with ``gate_biases`` (None: ``network``)."""
        _, height, width = self.image_shape
        run = PixelRunner(n, height, width)
        biases = gate_biases or [None] * self.num_layers
        steppers = [layer.stepper(n, width, bias) for layer, bias in zip(self.layers, biases, strict=True)]

        def pixel(inputs: torch.Tensor, i: int, j: int) -> torch.Tensor:
            x = run(self.input_conv, inputs, i, j)  # (n, 2h)
            skip = 0.0
            for k, (layer, stepper) in enumerate(zip(self.layers, steppers, strict=True)):
                out = run(layer.up, stepper.step(j, x), i, j)  # (n, 2h)
                x = x + out if self.residual else out
                if self.skip_connections:
                    skip = skip + run(self.skips[k], x, i, j)
            return run(self.output, skip if self.skip_connections else x, i, j)  # (n, P)

        def row(x: torch.Tensor, i: int) -> None:
            for stepper in steppers:
                if i > 0:
                    stepper.end_row(i - 1, self.scale_input(x[:, :, i - 1]))
                stepper.start_row(i)

        return sampling.cached_sample(
            self,
            n,
            known,
            known_mask,
            pixel_fn=pixel,
            commit_fn=lambda inputs, i, j: run.cache(self.input_conv).write(i, j, inputs),
            row_fn=row,
            temperature=temperature,
            generator=generator,
            progress=progress,
            trace=trace,
        )


_ARGS = """
        image_shape: (C, H, W).
        num_levels: K, values per sub-pixel.
        hidden_channels: h, LSTM units per layer (and direction); the residual stream carries 2h features.
        num_layers: number of recurrent layers.
        first_kernel_size: the mask-A input convolution size (7 in the paper).
        output_channels: width of the hidden 1x1 output layer (default 2h; the paper: 1024 for CIFAR-10 and
            ImageNet, 32 for MNIST).
        skip_connections: sum 1x1 convs of every layer's output into the head (sections 3.3, 4).
        residual: add each layer's input to its output (section 3.3); False as the paper's 64x64 model.
        learned_init: learn the initial recurrent state (the paper does); False starts from zeros.
        head: output distribution ("categorical")."""


@register("row_lstm")
class RowLSTM(PixelRNN):
    __doc__ = f"""Row LSTM (PixelRNN paper, section 3.1): row-by-row LSTM layers with residual connections.

    Args:{_ARGS}
    """

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
        return RowLSTMLayer(hidden_channels, groups, self.learned_init)


@register("diagonal_bilstm")
class DiagonalBiLSTM(PixelRNN):
    __doc__ = f"""Diagonal BiLSTM (PixelRNN paper, section 3.2): skewed column-wise LSTMs in two directions.

    Args:{_ARGS}
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
        residual: bool = True,
        learned_init: bool = False,
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
            residual=residual,
            learned_init=learned_init,
            head=head,
        )

    def _make_layer(self, index: int, hidden_channels: int, groups: int) -> nn.Module:
        image_channels = self.image_shape[0] if self.full_context and index == 0 else 0
        return DiagonalBiLSTMLayer(hidden_channels, groups, image_channels, self.learned_init)
