"""PixelCNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent Neural Networks", ICML).

Architecture (section 3.5 and Figure 5, Table 1 "PixelCNN"):
- a 7x7 convolution with mask A (the current sub-pixel and everything after it are hidden);
- ``num_layers`` residual blocks: ReLU, 1x1 conv (2h -> h), ReLU, 3x3 conv mask B (h -> h), ReLU,
  1x1 conv (h -> 2h), added to the block input (section 3.5, Figure 5);
- two ReLU + 1x1 mask-B output layers, the last emitting the head's parameters (a 256-way softmax per
  sub-pixel in the paper, section 5.3).
Every convolution, 1x1 ones included, is masked with R -> G -> B channel groups (section 3.4), so a
sub-pixel's logits see earlier pixels and earlier colours of its own pixel only.

The receptive field has the paper's blind spot (section 3.5 / Gated PixelCNN paper Figure 1): stacked
masked 3x3 convolutions never reach pixels up and to the right beyond the first layer's reach.

Deviations from the paper:
- ``hidden_channels`` is h (the paper's blocks carry 2h features); ``num_layers`` counts residual blocks.
- ``output_channels`` (the width of the first 1x1 output layer) defaults to 2h; the paper used 1024
  for CIFAR-10.
- With a head that draws a pixel's channels jointly (``head="dmol"``) the channel groups collapse to one
  and mask A hides the whole current pixel.

Fast sampling (not in the paper): ``fast_sample`` caches every masked convolution's input and computes only
the new pixel's column of activations per step (Ramachandran et al. 2017; ``pixelmodels.nn.cache``).
"""

from __future__ import annotations

import torch
from torch import nn

from pixelmodels import sampling
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.cache import PixelRunner
from pixelmodels.registry import register


class ResidualBlock(nn.Module):
    """PixelCNN residual block (PixelRNN paper Figure 5): 2h -> h -> h -> 2h, added to the input."""

    def __init__(self, hidden_channels: int, kernel_size: int, groups: int):
        super().__init__()
        h = hidden_channels
        self.body = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(2 * h, h, 1, "B", groups),
            nn.ReLU(),
            MaskedConv2d(h, h, kernel_size, "B", groups),
            nn.ReLU(),
            MaskedConv2d(h, 2 * h, 1, "B", groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def output_stack(in_channels: int, hidden_channels: int, num_params: int, groups: int) -> nn.Sequential:
    """The output layers of Table 1 (PixelRNN paper): ReLU, 1x1 mask-B conv, ReLU, 1x1 mask-B conv to the
    head's parameters. Shared by PixelCNN, Row LSTM and Diagonal BiLSTM."""
    return nn.Sequential(
        nn.ReLU(),
        MaskedConv2d(in_channels, hidden_channels, 1, "B", groups),
        nn.ReLU(),
        MaskedConv2d(hidden_channels, num_params, 1, "B", groups),
    )


@register("pixelcnn")
class PixelCNN(AutoregressiveModel):
    """PixelCNN with mask A/B convolutions and a per-sub-pixel categorical head.

    Args:
        image_shape: (C, H, W).
        num_levels: K, values per sub-pixel.
        hidden_channels: h; residual blocks carry 2h channels.
        num_layers: number of residual blocks.
        kernel_size: the masked convolution size inside the blocks (3 in the paper).
        first_kernel_size: the mask-A input convolution size (7 in the paper).
        output_channels: width of the hidden 1x1 output layer (default 2h).
        head: output distribution ("categorical").
    """

    row_croppable = True  # stride-1 causal convolutions (and shifted resampling): rows below are never read

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 64,
        num_layers: int = 7,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        head: str = "categorical",
    ):
        super().__init__(image_shape, num_levels, head)
        c = self.image_shape[0]
        groups = self.colour_groups(hidden_channels)
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.output_channels = output_channels
        h, out_h = hidden_channels, output_channels or 2 * hidden_channels

        self.input_conv = MaskedConv2d(c, 2 * h, first_kernel_size, "A", groups)
        self.blocks = nn.ModuleList(ResidualBlock(h, kernel_size, groups) for _ in range(num_layers))
        self.output = output_stack(2 * h, out_h, self.head.num_params, groups)

    @property
    def receptive_radius(self) -> int:
        """The parameters at (h, w) read inputs only in rows h-r..h, columns w-r..w+r (zero-padded stride-1
        convolutions); the codec evaluates the network on such windows."""
        return self.first_kernel_size // 2 + self.num_layers * (self.kernel_size // 2)

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.input_conv(inputs)  # (B, 2h, H, W)
        for block in self.blocks:
            x = block(x)
        return self.output(x)  # (B, P, H, W)

    @torch.no_grad()
    def fast_sample(
        self,
        n: int,
        cond: torch.Tensor | None,
        known: torch.Tensor | None,
        known_mask: torch.Tensor | None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        trace: list | None = None,
    ) -> torch.Tensor:
        """Cached sampling: per step, only the current pixel's activations in every layer are computed."""
        _, height, width = self.image_shape
        run = PixelRunner(n, height, width)

        def pixel(inputs: torch.Tensor, i: int, j: int) -> torch.Tensor:
            x = run(self.input_conv, inputs, i, j)  # (B, 2h)
            for block in self.blocks:
                x = x + run(block.body, x, i, j)
            return run(self.output, x, i, j)  # (B, P)

        return sampling.cached_sample(
            self,
            n,
            known,
            known_mask,
            pixel_fn=pixel,
            commit_fn=lambda inputs, i, j: run.cache(self.input_conv).write(i, j, inputs),
            temperature=temperature,
            generator=generator,
            progress=progress,
            trace=trace,
        )
