"""PixelCNN++ (Salimans, Karpathy, Chen, Kingma 2017, "PixelCNN++: Improving the PixelCNN with Discretized
Logistic Mixture Likelihood and Other Modifications", ICLR; code: openai/pixel-cnn).

Architecture (section 2 and Figure 2; ``pixel_cnn_pp/model.py``):
- output distribution: a discretized mixture of logistics per pixel with the channels coupled linearly
  (sections 2.1-2.2; ``heads.DiscretizedMixLogisticHead``); the network conditions on whole pixels, never on a
  channel of the current pixel, so one step generates a whole pixel (section 2.2);
- two streams of shifted convolutions instead of masks (section 2.3 refers to the Gated PixelCNN's vertical and
  horizontal stacks): ``u`` (down-shifted, sees the rows above) and ``ul`` (down-right-shifted, sees the rows
  above and the pixels to the left); ``nn/shifted.py`` draws them;
- gated ResNet blocks with concat_elu (``GatedResNet``, the conv passed as an argument so one block serves both
  streams); ``ul`` blocks read ``u`` through a 1x1 short-cut;
- three resolutions (section 2.3): ``num_layers`` blocks per stage, stride-2 shifted convolutions down
  (e.g. 32 -> 16 -> 8), transposed ones back up, and short-cut connections from every block of the up pass to
  the matching block of the down pass (section 2.4, Figure 2); the down pass has ``num_layers + 1`` blocks per
  stage after the first (one more output per stage in the up pass: the downsampling conv);
- dropout on the residual path of every block (section 2.5), default 0.5 as in the paper's CIFAR-10 model.

Sampling: ``fast_sample`` is a cached sampler (Ramachandran et al. 2017, "Fast Generation for Convolutional
Autoregressive Models"; ``nn/shifted_cache.py``): every shifted convolution keeps the last ``kh`` rows of its
input at its own resolution; the ``u`` stream advances once per image row and the ``ul`` stream once per pixel,
each resolution l only at rows / pixels whose indices are divisible by 2^l; a transposed convolution turns the
last low-resolution row (pixel) into the full-resolution rows (pixels) that read it, and the up pass's short-cuts
are consumed by the down pass of the same level in the same step. Then one joint DMoL draw per pixel. Every
step's parameters equal a full forward pass (tests/test_fast_sampling.py).

Deviations from the paper:
- No weight normalization or data-dependent initialization (openai/pixel-cnn ``nn.conv2d``): PyTorch's default
  initialization, with the second conv of every block scaled by 0.1 as the reference's ``init_scale=0.1``.
- Any channel count and any K; ``num_resolutions`` (3 in the paper) is a hyper-parameter; feature maps of odd
  size are halved to ceil(H/2) and cropped back on the way up.
- ``head="categorical"`` replaces the DMoL by a K-way softmax per sub-pixel; for C > 1 a channel-masked 1x1
  layer (mask A, R -> G -> B groups) then feeds the earlier channels of the current pixel to the output layers.
- Optional class conditioning (``num_classes``) adds a learned per-class bias in every block, as the
  reference's ``h`` input does with a one-hot vector.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from pixelmodels import sampling
from pixelmodels.heads import DEFAULT_NUM_MIXTURES, build_head
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.nn import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    MaskedConv2d,
    concat_elu,
    down_shift,
    right_shift,
)
from pixelmodels.nn.cache import pointwise_weight
from pixelmodels.nn.shifted_cache import PixelCNNPPStepper
from pixelmodels.registry import register

#: openai/pixel-cnn ``gated_resnet``: the second conv starts at a tenth of the default scale.
RESIDUAL_INIT_SCALE = 0.1

ConvFactory = Callable[[int, int], nn.Module]


class GatedResNet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(short-cut)))).

    Args:
        channels: F, features in and out.
        conv: factory ``conv(in, out)`` for the two convolutions (down- or down-right-shifted).
        shortcut_channels: features of the auxiliary input ``a`` (0: none).
        dropout: dropout probability on the residual path.
        num_classes: adds a learned per-class bias to the gates when set.
    """

    def __init__(
        self,
        channels: int,
        conv: ConvFactory,
        shortcut_channels: int = 0,
        dropout: float = 0.0,
        num_classes: int | None = None,
    ):
        super().__init__()
        self.conv_in = conv(2 * channels, channels)
        self.shortcut = nn.Conv2d(2 * shortcut_channels, channels, 1) if shortcut_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv(2 * channels, 2 * channels)
        with torch.no_grad():
            self.conv_out.weight.mul_(RESIDUAL_INIT_SCALE)
        self.class_bias = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        h = self.conv_in(concat_elu(x))  # (B, F, H, W)
        if a is not None:
            h = h + self.shortcut(concat_elu(a))
        h = self.conv_out(self.dropout(concat_elu(h)))  # (B, 2F, H, W)
        if self.class_bias is not None and cond is not None:
            h = h + self.class_bias(cond)[:, :, None, None]
        gate_in, gate = h.chunk(2, dim=1)
        return x + gate_in * torch.sigmoid(gate)


@register("pixelcnn_pp")
class PixelCNNPP(AutoregressiveModel):
    """PixelCNN++: shifted-convolution streams over three resolutions and a discretized logistic mixture head.

    Args:
        image_shape: (C, H, W).
        num_levels: K, values per sub-pixel.
        hidden_channels: F, features of both streams (160 in the paper).
        num_layers: gated ResNet blocks per stage (5 in the paper).
        num_resolutions: stages, each at half the resolution of the previous (3 in the paper).
        num_mixtures: logistic components of the DMoL head (10 in the paper's code).
        dropout: dropout probability inside every block (0.5 in the paper).
        num_classes: class-conditional when set (labels in [0, num_classes)).
        head: "dmol" (the paper) or "categorical" (a K-way softmax per sub-pixel).
    """

    row_croppable = True  # stride-1 causal convolutions (and shifted resampling): rows below are never read

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 160,
        num_layers: int = 5,
        num_resolutions: int = 3,
        num_mixtures: int = DEFAULT_NUM_MIXTURES,
        dropout: float = 0.5,
        num_classes: int | None = None,
        head: str = "dmol",
    ):
        super().__init__(image_shape, num_levels, head)
        if head == "dmol":
            self.head = build_head(head, self.image_shape[0], self.num_levels, num_mixtures=num_mixtures)
        c = self.image_shape[0]
        if hidden_channels < c:
            raise ValueError(f"hidden_channels ({hidden_channels}) must be at least the channel count ({c})")
        if num_layers < 0 or num_resolutions < 1:
            raise ValueError(f"need num_layers >= 0 and num_resolutions >= 1, got {num_layers}, {num_resolutions}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes}")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.num_resolutions = num_resolutions
        self.num_mixtures = num_mixtures
        self.dropout = dropout
        self._num_classes = num_classes
        f = hidden_channels

        down = partial(DownShiftedConv2d, kernel_size=(2, 3))
        down_right = partial(DownRightShiftedConv2d, kernel_size=(2, 2))
        block = partial(GatedResNet, f, dropout=dropout, num_classes=num_classes)

        # the input gets a channel of ones so the network can tell the image from the zero padding (openai code)
        self.u_init = DownShiftedConv2d(c + 1, f, (2, 3))
        self.ul_init_above = DownShiftedConv2d(c + 1, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv2d(c + 1, f, (2, 1))
        r = num_resolutions
        self.up_u = nn.ModuleList(nn.ModuleList(block(down) for _ in range(num_layers)) for _ in range(r))
        self.up_ul = nn.ModuleList(
            nn.ModuleList(block(down_right, shortcut_channels=f) for _ in range(num_layers)) for _ in range(r)
        )
        self.downsample_u = nn.ModuleList(DownShiftedConv2d(f, f, (2, 3), stride=2) for _ in range(r - 1))
        self.downsample_ul = nn.ModuleList(DownRightShiftedConv2d(f, f, (2, 2), stride=2) for _ in range(r - 1))
        depth = [num_layers] + [num_layers + 1] * (r - 1)  # one more short-cut per stage: the resampling output
        self.down_u = nn.ModuleList(nn.ModuleList(block(down, shortcut_channels=f) for _ in range(n)) for n in depth)
        self.down_ul = nn.ModuleList(
            nn.ModuleList(block(down_right, shortcut_channels=2 * f) for _ in range(n)) for n in depth
        )
        self.upsample_u = nn.ModuleList(DownShiftedConvTranspose2d(f, f, (2, 3), stride=2) for _ in range(r - 1))
        self.upsample_ul = nn.ModuleList(DownRightShiftedConvTranspose2d(f, f, (2, 2), stride=2) for _ in range(r - 1))

        p = self.head.num_params
        self.channel_masked = not self.head.joint_channels and c > 1
        if self.channel_masked:
            # a categorical head over C > 1 channels: sub-pixel c must also see channels < c of its own pixel
            self.output_hidden = nn.Conv2d(f, f, 1)
            self.current_pixel = MaskedConv2d(c, f, 1, "A", c)
            self.output = MaskedConv2d(f, p, 1, "B", c)
        else:
            self.output = nn.Conv2d(f, p, 1)

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = inputs.shape
        x = torch.cat([inputs, inputs.new_ones(b, 1, h, w)], dim=1)  # (B, C+1, H, W)
        # up pass (section 2.3): u sees the rows above, ul the rows above and the pixels to the left
        u_list = [down_shift(self.u_init(x))]  # (B, F, H, W)
        ul_list = [down_shift(self.ul_init_above(x)) + right_shift(self.ul_init_left(x))]
        for stage in range(self.num_resolutions):
            if stage > 0:
                u_list.append(self.downsample_u[stage - 1](u_list[-1]))  # (B, F, ceil(H/2), ceil(W/2))
                ul_list.append(self.downsample_ul[stage - 1](ul_list[-1]))
            for u_block, ul_block in zip(self.up_u[stage], self.up_ul[stage], strict=True):
                u_list.append(u_block(u_list[-1], cond=cond))
                ul_list.append(ul_block(ul_list[-1], u_list[-1], cond=cond))

        # down pass: every block reads the matching up-pass output through a short-cut (section 2.4)
        u, ul = u_list.pop(), ul_list.pop()
        for stage in range(self.num_resolutions):
            if stage > 0:
                size = tuple(u_list[-1].shape[-2:])
                u = self.upsample_u[stage - 1](u, size)  # (B, F, 2x the previous size, cropped)
                ul = self.upsample_ul[stage - 1](ul, size)
            for u_block, ul_block in zip(self.down_u[stage], self.down_ul[stage], strict=True):
                u = u_block(u, u_list.pop(), cond=cond)
                ul = ul_block(ul, torch.cat([u, ul_list.pop()], dim=1), cond=cond)
        assert not u_list and not ul_list, "every up-pass output feeds exactly one down-pass block"

        return self.output_layers(ul, inputs)  # (B, P, H, W)

    def output_layers(self, ul: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The 1x1 output layers on the final ``ul`` features: maps (B, F, H, W) or one pixel's vectors (B, F)."""
        if self.channel_masked:
            hidden = F.elu(_pointwise(self.output_hidden, F.elu(ul)) + _pointwise(self.current_pixel, inputs))
            return _pointwise(self.output, hidden)
        return _pointwise(self.output, F.elu(ul))

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
        """Cached sampling (Ramachandran et al. 2017; ``nn/shifted_cache.py``): the ``u`` stream advances a row at
        a time, the ``ul`` stream a pixel at a time, each resolution on its own schedule. ``trace``: when a list,
        gets ``(step_index, params)`` for every step."""
        stepper = PixelCNNPPStepper(self, n, cond)
        features: dict[tuple[int, int], torch.Tensor] = {}  # the current pixel's final ul (one entry)

        def pixel(inputs: torch.Tensor, i: int, j: int) -> torch.Tensor:
            if (i, j) not in features:  # a categorical head takes C steps per pixel; the streams run once
                features.clear()
                features[(i, j)] = stepper.pixel(i, j)
            return self.output_layers(features[(i, j)], inputs)  # (n, P)

        return sampling.cached_sample(
            self,
            n,
            known,
            known_mask,
            pixel_fn=pixel,
            commit_fn=lambda inputs, i, j: stepper.commit(inputs, j),
            row_fn=lambda x, i: stepper.start_row(self.scale_input(x[:, :, i - 1]) if i > 0 else None, i),
            temperature=temperature,
            generator=generator,
            progress=progress,
            trace=trace,
        )


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution on a map (B, C, H, W), or as a matrix product on vectors (B, C)."""
    return conv(x) if x.dim() == 4 else F.linear(x, pointwise_weight(conv), conv.bias)
