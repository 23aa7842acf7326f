"""Gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu 2016, "Conditional Image
Generation with PixelCNN Decoders", NeurIPS).

Architecture (section 2, Figure 2; the blocks live in ``pixelmodels.nn.gated``):
- a vertical stack ((n//2+1) x n convolutions over the rows above, fed the image shifted down one row) and a
  horizontal stack (1 x (n//2+1) convolutions over the pixels to the left; the current pixel under mask A in
  the first layer and mask B after, with R -> G -> B channel groups), which together remove PixelCNN's blind
  spot (section 2.2, Figure 1);
- gated activation units tanh(W_f * x) * sigmoid(W_g * x) in both stacks (section 2.1, eq. 2);
- a 1x1 link from each vertical pre-activation into the horizontal one, a residual connection (after a 1x1
  conv) in the horizontal stack, and 1x1 skip outputs summed over layers into the output network;
- conditioning (section 2.3): a class label's learned embedding (eq. 4) and/or a spatial map projected by a 1x1
  convolution (eq. 5) are added inside every gate;
- output: ReLU, 1x1 mask-B conv, ReLU, 1x1 mask-B conv to the head's parameters (a K-way softmax per sub-pixel).

``cond`` (see ``check_cond``):
- ``num_classes`` set: integer labels, (B,) or one int for all;
- ``cond_channels`` set: a float map (B, cond_channels, H, W) or (cond_channels, H, W);
- both: a dict ``{"labels": ..., "map": ...}`` (either key may be left out);
- ``None`` for a conditional model: the learned "no label" embedding and no map. It models p(x) only if the
  model was trained with ``label_dropout`` > 0 (labels replaced by "no label" at random, as in classifier-free
  guidance); otherwise that embedding keeps its initial value.

Fast sampling (Ramachandran et al. 2017): the vertical stack is computed once per row, the horizontal stack
once per step at the current pixel only, from per-layer caches (``GatedStackStepper``).

Deviations from the paper:
- The spatial map must have the image's height and width (the paper upsamples a smaller map with a
  deconvolutional network, which a caller can put in front).
- The first layer has no residual connection (its input is the image), as in most implementations.
- The "no label" embedding and ``label_dropout`` are additions, so one model can also be used unconditionally.
- ``hidden_channels`` is p (gates take 2p pre-activations); ``output_channels`` defaults to 2p.
"""

from __future__ import annotations

import torch
from torch import nn

from pixelmodels import sampling
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.cache import PixelRunner
from pixelmodels.nn.gated import GatedStack, GatedStackStepper
from pixelmodels.registry import register


@register("gated_pixelcnn")
class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN with optional class and spatial conditioning.

    Args:
        image_shape: (C, H, W).
        num_levels: K, values per sub-pixel.
        hidden_channels: p, the width of both stacks.
        num_layers: number of gated layers.
        kernel_size: n, the size of each layer's receptive field (odd; the first layer uses the same).
        output_channels: width of the hidden 1x1 output layer (default 2p).
        num_classes: number of class labels (None: no label conditioning).
        cond_channels: channels of a spatial conditioning map (0: none).
        label_dropout: probability, in training mode, of replacing a label by "no label".
        head: output distribution ("categorical").
    """

    row_croppable = True  # stride-1 causal convolutions (and shifted resampling): rows below are never read

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        hidden_channels: int = 64,
        num_layers: int = 8,
        kernel_size: int = 5,
        output_channels: int | None = None,
        num_classes: int | None = None,
        cond_channels: int = 0,
        label_dropout: float = 0.0,
        head: str = "categorical",
    ):
        super().__init__(image_shape, num_levels, head)
        c = self.image_shape[0]
        groups = self.colour_groups(hidden_channels)
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
        if cond_channels < 0:
            raise ValueError(f"cond_channels must be >= 0, got {cond_channels}")
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.output_channels = output_channels
        self._num_classes = num_classes
        self.cond_channels = cond_channels
        self.label_dropout = label_dropout
        p, out_p = hidden_channels, output_channels or 2 * hidden_channels

        self.stack = GatedStack(c, p, num_layers, kernel_size, groups, num_classes, cond_channels)
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(p, out_p, 1, "B", groups),
            nn.ReLU(),
            MaskedConv2d(out_p, self.head.num_params, 1, "B", groups),
        )

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def network(self, inputs: torch.Tensor, cond=None) -> torch.Tensor:
        labels, cond_map = self.split_cond(cond)
        if labels is not None and self.training and self.label_dropout > 0:
            dropped = torch.rand(labels.shape, device=labels.device) < self.label_dropout
            labels = torch.where(dropped, torch.full_like(labels, self.num_classes), labels)
        skip = self.stack(inputs, labels, cond_map)  # (B, p, H, W)
        return self.output(skip)  # (B, P, H, W)

    # ----- conditioning --------------------------------------------------------------------------------------
    def split_cond(self, cond) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(labels, map) from an already checked ``cond``; a bare tensor is a map if floating, else labels."""
        if cond is None:
            return None, None
        if isinstance(cond, dict):
            return cond.get("labels"), cond.get("map")
        return (None, cond) if cond.dtype.is_floating_point else (cond, None)

    def check_cond(self, cond, batch: int, device=None):
        """Validate ``cond`` (labels, map, or a dict of both; see the module docstring) for ``batch`` images."""
        if cond is None:
            return None
        if self.num_classes is None and not self.cond_channels:
            raise ValueError(f"model {self.model_name!r} is unconditional: pass cond=None")
        if isinstance(cond, dict):
            unknown = set(cond) - {"labels", "map"}
            if unknown:
                raise ValueError(f"cond dict keys must be 'labels' and/or 'map', got {sorted(unknown)}")
            labels, cond_map = cond.get("labels"), cond.get("map")
        else:
            cond = torch.as_tensor(cond, device=device)
            is_map = cond.dtype.is_floating_point
            labels, cond_map = (None, cond) if is_map else (cond, None)
        if labels is not None:
            if self.num_classes is None:
                raise ValueError(f"this {self.model_name!r} takes no class labels (num_classes=None)")
            labels = super().check_cond(labels, batch, device)
        if cond_map is not None:
            cond_map = self._check_map(torch.as_tensor(cond_map, device=device), batch)
        if labels is not None and cond_map is not None:
            return {"labels": labels, "map": cond_map}
        return labels if cond_map is None else cond_map

    def _check_map(self, cond_map: torch.Tensor, batch: int) -> torch.Tensor:
        if not self.cond_channels:
            raise ValueError(f"this {self.model_name!r} takes no spatial map (cond_channels=0)")
        shape = (self.cond_channels, *self.image_shape[1:])
        if cond_map.dim() == 3:
            cond_map = cond_map.unsqueeze(0).expand(batch, *shape)
        if not cond_map.dtype.is_floating_point or tuple(cond_map.shape) != (batch, *shape):
            raise ValueError(
                f"the conditioning map must be a float tensor of shape ({batch}, {', '.join(map(str, shape))}), "
                f"got {cond_map.dtype} {tuple(cond_map.shape)}"
            )
        return cond_map.float()

    # ----- fast sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def fast_sample(
        self,
        n: int,
        cond,
        known: torch.Tensor | None,
        known_mask: torch.Tensor | None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        trace: list | None = None,
    ) -> torch.Tensor:
        """Cached sampling: the vertical stack once per row, the horizontal stack at the current pixel only."""
        _, height, width = self.image_shape
        labels, cond_map = self.split_cond(cond)
        stepper = GatedStackStepper(self.stack, n, height, width, labels, cond_map)
        run = PixelRunner(n, height, width)

        def pixel(inputs: torch.Tensor, i: int, j: int) -> torch.Tensor:
            return run(self.output, stepper.pixel(inputs, i, j), i, j)  # (B, P)

        return sampling.cached_sample(
            self,
            n,
            known,
            known_mask,
            pixel_fn=pixel,
            commit_fn=stepper.commit,
            row_fn=lambda x, i: stepper.start_row(self.scale_input(x[:, :, i - 1]) if i > 0 else None, i),
            temperature=temperature,
            generator=generator,
            progress=progress,
            trace=trace,
        )
