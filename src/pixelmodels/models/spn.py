"""Subscale Pixel Networks (Menick & Kalchbrenner 2018, "Generating High Fidelity Images with Subscale Pixel
Networks and Multidimensional Upscaling", ICLR 2019).

- Subscale ordering (Figure 3): the image is cut into S*S interleaved slices ``x[:, :, a::S, b::S]``
  (``pixelmodels.nn.subscale``), generated in raster order of (a, b); inside a slice, raster order and R -> G -> B.
- Context network (the paper's "embedding" of the previous slices): a convolutional network at slice resolution
  whose input is every slice stacked on the channel axis, the slices not yet generated set to zero, plus the
  meta-position of the target slice (one-hot planes of its index). It sees all earlier slices whole.
- Decoder: a masked convolutional network over the target slice alone (PixelCNN mask A/B residual blocks,
  ``pixelmodels.nn.MaskedConv2d``), the context map added inside every block (a 1x1 projection, the
  conditional-PixelCNN recipe). One decoder, weights shared by all slices; it sees the target slice's earlier
  sub-pixels only through its masks.
- Training on slices: ``training_loss`` draws ``train_slices`` random target slices per image and scales their
  log-likelihood by S*S / train_slices (an unbiased estimate of the image's), so activations are those of
  ``train_slices`` slices whatever the image size. ``log_prob`` sums all S*S slices exactly.
- Size upscaling (multidimensional upscaling, "size"): the first slice, a downsampled image, is modelled by a
  separate decoder without context network; the SPN models the remaining slices.
- Depth upscaling ("depth"): with K = 2^b levels and ``depth_upscaling_bits = m``, a first SPN models the m most
  significant bits of every sub-pixel, a second SPN the b - m least significant bits conditioned on the whole
  MSB image (stacked, as slices, into its context network and into its first-slice decoder).
  log p(x) = log p(msb) + log p(lsb | msb); sampling draws the whole MSB image, then the LSB image.

Generation order and the generic tools: without depth upscaling, ``order()`` is the subscale order and
``network`` returns every sub-pixel's parameters (teacher forcing over all slices in one batch), so the generic
naive sampler, causality test and codec apply. With depth upscaling there is no single step per sub-pixel:
``network`` returns [MSB params | LSB params] on the channel axis, each stage walks ``order()`` in turn,
``log_prob`` and ``sample`` are overridden, and ``stage_log_probs`` exposes both terms.

Deviations from the paper:
- Both networks are convolutional; the paper's use masked self-attention (its decoder is a Transformer-style
  network over the flattened slice). The masked-conv decoder keeps PixelCNN's blind spot inside a slice.
- The meta-position is given as one-hot planes, not a learned embedding; no class or other conditioning.
- The LSB stage sees the MSB image stacked as slices (each slice position sees its S x S MSB block), not
  through a separate conditioning network.
- No cached (incremental) decoding inside a slice: ``fast_sample`` runs the context network once per slice and
  the slice decoder once per step on the slice only (S*S smaller than the image) instead of the whole network.
- Sizes are free hyper-parameters; the paper's ImageNet 64x64 model (3.52 bits/dim) had ~150M parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from pixelmodels.heads import Head, build_head
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.subscale import earlier_slices, from_slices, meta_position, to_slices
from pixelmodels.ordering import Step, subscale_order
from pixelmodels.registry import register


class ConditionedBlock(nn.Module):
    """PixelCNN residual block (2h -> h -> h -> 2h, masked) with a conditioning map added to its hidden features."""

    def __init__(self, hidden_channels: int, kernel_size: int, groups: int, cond_channels: int):
        super().__init__()
        h = hidden_channels
        self.reduce = nn.Sequential(nn.ReLU(), MaskedConv2d(2 * h, h, 1, "B", groups))
        # The condition only depends on earlier slices: every colour group may see it.
        self.cond = nn.Conv2d(cond_channels, h, 1) if cond_channels else None
        self.expand = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(h, h, kernel_size, "B", groups),
            nn.ReLU(),
            MaskedConv2d(h, 2 * h, 1, "B", groups),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        y = self.reduce(x)  # (N, h, h', w')
        if self.cond is not None:
            y = y + self.cond(cond)
        return x + self.expand(y)


class SliceDecoder(nn.Module):
    """Masked decoder over one slice: mask-A input conv, conditioned mask-B residual blocks, 1x1 output convs."""

    def __init__(self, channels, groups, hidden, layers, kernel_size, first_kernel_size, cond_channels, num_params):
        super().__init__()
        h = hidden
        self.input_conv = MaskedConv2d(channels, 2 * h, first_kernel_size, "A", groups)
        self.input_cond = nn.Conv2d(cond_channels, 2 * h, 1) if cond_channels else None
        self.blocks = nn.ModuleList(ConditionedBlock(h, kernel_size, groups, cond_channels) for _ in range(layers))
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(2 * h, 2 * h, 1, "B", groups),
            nn.ReLU(),
            MaskedConv2d(2 * h, num_params, 1, "B", groups),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        y = self.input_conv(x)  # (N, 2h, h', w')
        if self.input_cond is not None:
            y = y + self.input_cond(cond)
        for block in self.blocks:
            y = block(y, cond)
        return self.output(y)  # (N, P, h', w')


class ContextNetwork(nn.Module):
    """Unmasked residual conv stack at slice resolution over the earlier slices (+ meta-position, + MSB planes)."""

    def __init__(self, in_channels: int, hidden: int, layers: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.input_conv = nn.Conv2d(in_channels, hidden, kernel_size, padding=pad)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(), nn.Conv2d(hidden, hidden, kernel_size, padding=pad), nn.ReLU(), nn.Conv2d(hidden, hidden, 1)
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.input_conv(x)  # (N, hc, h', w')
        for block in self.blocks:
            y = y + block(y)
        return y


class SubscaleStage(nn.Module):
    """One SPN over images with ``head.num_levels`` values per sub-pixel, optionally conditioned on a fully
    visible image of ``extra_channels`` channels (the MSB image, for the LSB stage of depth upscaling)."""

    def __init__(self, head: Head, image_shape, scale, hidden, layers, context_channels, context_layers,
                 kernel_size, first_kernel_size, size_upscaling, extra_channels=0):  # fmt: skip
        super().__init__()
        c = image_shape[0]
        groups = 1 if head.joint_channels else c
        t = scale * scale
        self.head, self.scale, self.num_slices = head, scale, t
        decoder_args = (c, groups, hidden, layers, kernel_size, first_kernel_size)
        self.context = ContextNetwork(t * (c + 1 + extra_channels), context_channels, context_layers, kernel_size)
        self.decoder = SliceDecoder(*decoder_args, context_channels, head.num_params)
        # Size upscaling: the first slice has its own decoder, which sees no context network.
        self.first_decoder = (
            SliceDecoder(*decoder_args, t * extra_channels, head.num_params) if size_upscaling else None
        )

    def _context_input(self, slices, targets, extra_planes):
        b, n = targets.shape
        _, t, _, h, w = slices.shape
        parts = [earlier_slices(slices, targets), meta_position(targets, t, h, w)]  # (B, n, T*C, h, w), (B, n, T, h, w)
        if extra_planes is not None:
            parts.append(extra_planes[:, None].expand(b, n, *extra_planes.shape[1:]))  # (B, n, T*Ce, h, w)
        return torch.cat(parts, dim=2).flatten(0, 1)  # (B*n, T*(C+1+Ce), h, w)

    def forward(self, inputs, extra=None, targets=None) -> torch.Tensor:
        """Teacher-forced parameters of the target slices.

        Args:
            inputs: (B, C, H, W) scaled images; extra: (B, Ce, H, W) scaled conditioning image or None.
            targets: (B, n) long target slice indices (default: all S*S slices in order).
        Returns:
            (B, n, P, H/S, W/S).
        """
        slices = to_slices(inputs, self.scale)  # (B, T, C, h, w)
        b, t, _, h, w = slices.shape
        if targets is None:
            targets = torch.arange(t, device=inputs.device).expand(b, t)
        n = targets.shape[1]
        extra_planes = None if extra is None else to_slices(extra, self.scale).flatten(1, 2)  # (B, T*Ce, h, w)
        current = slices[torch.arange(b, device=inputs.device)[:, None], targets].flatten(0, 1)  # (B*n, C, h, w)
        if self.first_decoder is None:
            context = self.context(self._context_input(slices, targets, extra_planes))  # (B*n, hc, h, w)
            return self.decoder(current, context).view(b, n, -1, h, w)
        first = (targets == 0).flatten()  # (B*n,)
        params = current.new_zeros(b * n, self.head.num_params, h, w)
        if not first.all():
            rest = (~first).nonzero().squeeze(1)
            context = self.context(self._context_input(slices, targets, extra_planes)[rest])
            params = params.index_copy(0, rest, self.decoder(current[rest], context))
        if first.any():
            idx = first.nonzero().squeeze(1)
            cond = None if extra_planes is None else extra_planes.repeat_interleave(n, dim=0)[idx]
            params = params.index_copy(0, idx, self.first_decoder(current[idx], cond))
        return params.view(b, n, -1, h, w)

    def slice_decoder(self, slices, t: int, extra_planes):
        """The decoder of slice ``t`` and its conditioning map (computed once per slice by the sampler)."""
        if t == 0 and self.first_decoder is not None:
            return self.first_decoder, extra_planes
        targets = torch.full((slices.shape[0], 1), t, dtype=torch.long, device=slices.device)
        return self.decoder, self.context(self._context_input(slices, targets, extra_planes))

    def log_prob_slices(self, x, inputs, extra=None, targets=None) -> torch.Tensor:
        """log p of the target slices of the integer images ``x`` (B, C, H, W): (B, n)."""
        params = self(inputs, extra, targets)  # (B, n, P, h, w)
        b, n = params.shape[:2]
        xs = to_slices(x, self.scale)  # (B, T, C, h, w)
        if targets is not None:
            xs = xs[torch.arange(b, device=x.device)[:, None], targets]  # (B, n, C, h, w)
        logp = self.head.log_prob(params.flatten(0, 1).float(), xs.flatten(0, 1))  # (B*n, C, h, w)
        return logp.sum(dim=(1, 2, 3)).view(b, n)


@register("spn")
class SubscalePixelNetwork(AutoregressiveModel):
    """Subscale Pixel Network with optional size and depth upscaling.

    Args:
        image_shape: (C, H, W); H and W divisible by ``scale``.
        num_levels: K; a power of two when ``depth_upscaling_bits`` > 0.
        scale: subscale factor S (S*S slices of size H/S x W/S).
        hidden_channels: h of the slice decoder (its blocks carry 2h channels).
        num_layers: residual blocks of the slice decoder.
        context_channels: width of the context network (default 2h).
        context_layers: residual blocks of the context network.
        kernel_size: masked conv size in the decoder blocks and conv size of the context network.
        first_kernel_size: the decoder's mask-A input convolution size.
        size_upscaling: model the first slice with a separate decoder without context network.
        depth_upscaling_bits: m > 0: an SPN for the m most significant bits, then one for the rest given them.
        train_slices: target slices per image in ``training_loss`` (0: all, i.e. the exact log-likelihood).
        head: output distribution ("categorical").
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        scale: int = 2,
        hidden_channels: int = 64,
        num_layers: int = 4,
        context_channels: int | None = None,
        context_layers: int = 4,
        kernel_size: int = 3,
        first_kernel_size: int = 5,
        size_upscaling: bool = False,
        depth_upscaling_bits: int = 0,
        train_slices: int = 1,
        head: str = "categorical",
    ):
        super().__init__(image_shape, num_levels, head)
        c, height, width = self.image_shape
        if scale < 1 or height % scale or width % scale:
            raise ValueError(f"image size {height}x{width} is not divisible by the subscale factor {scale}")
        if hidden_channels < (1 if self.head.joint_channels else c):
            raise ValueError(f"hidden_channels ({hidden_channels}) must be at least the channel count ({c})")
        if num_layers < 0 or context_layers < 0:
            raise ValueError(f"num_layers and context_layers must be >= 0, got {num_layers}, {context_layers}")
        if not 0 <= train_slices <= scale * scale:
            raise ValueError(f"train_slices must be in [0, {scale * scale}], got {train_slices}")
        bits = self.num_levels.bit_length() - 1
        if depth_upscaling_bits and (self.num_levels != 1 << bits or not 0 < depth_upscaling_bits < bits):
            raise ValueError(
                f"depth_upscaling_bits={depth_upscaling_bits} needs num_levels = 2^b with b > {depth_upscaling_bits}"
                f" (got num_levels={self.num_levels})"
            )
        self.scale = scale
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.context_channels = context_channels
        self.context_layers = context_layers
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.size_upscaling = size_upscaling
        self.depth_upscaling_bits = depth_upscaling_bits
        self.train_slices = train_slices
        if depth_upscaling_bits:
            self.stage_levels = [1 << depth_upscaling_bits, self.num_levels >> depth_upscaling_bits]
            heads = [build_head(head, c, k) for k in self.stage_levels]
        else:
            self.stage_levels, heads = [self.num_levels], [self.head]
        args = (self.image_shape, scale, hidden_channels, num_layers, context_channels or 2 * hidden_channels)
        args += (context_layers, kernel_size, first_kernel_size, size_upscaling)
        self.stages = nn.ModuleList(
            SubscaleStage(hd, *args, extra_channels=c if i else 0) for i, hd in enumerate(heads)
        )
        self._naive_stages = False  # set by sample(method="naive") for the stage-by-stage sampler

    @property
    def supports_fixed_point(self) -> bool:
        return len(getattr(self, "stages", ())) <= 1  # depth upscaling: each stage walks the order with its own head

    def order(self) -> list[Step]:
        """The subscale order; with depth upscaling each stage walks it in turn (MSB image first)."""
        if self._order is None:
            self._order = subscale_order(*self.image_shape, self.scale, joint_channels=self.head.joint_channels)
        return self._order

    # ----- depth split ---------------------------------------------------------------------------------------
    def split_depth(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Integer images -> one image per stage: [x], or [most significant bits, least significant bits]."""
        if len(self.stages) == 1:
            return [x]
        low = self.stage_levels[1]
        return [torch.div(x, low, rounding_mode="floor"), x % low]

    @staticmethod
    def _scale(x: torch.Tensor, levels: int) -> torch.Tensor:
        return x.float() * (2.0 / (levels - 1)) - 1.0

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.stages) == 1:
            return from_slices(self.stages[0](inputs), self.scale)  # (B, P, H, W)
        # Depth upscaling splits integer values: recover them from the scaled inputs (not differentiable).
        x = torch.round((inputs + 1) * (self.num_levels - 1) / 2).long()
        msb, lsb = (self._scale(v, k) for v, k in zip(self.split_depth(x), self.stage_levels, strict=True))
        params_msb = from_slices(self.stages[0](msb), self.scale)  # (B, Pm, H, W)
        params_lsb = from_slices(self.stages[1](lsb, extra=msb), self.scale)  # (B, Pl, H, W)
        return torch.cat([params_msb, params_lsb], dim=1)

    def stage_log_probs(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Exact log-likelihood of each stage, each (B,): [log p(x)] or [log p(msb), log p(lsb | msb)]."""
        return [lp.sum(1) for lp in self._slice_log_probs(x, cond, None)]

    def _slice_log_probs(self, x, cond, targets) -> list[torch.Tensor]:
        self.check_images(x)
        self.check_cond(cond, x.shape[0])
        out, extra = [], None
        for stage, part, levels in zip(self.stages, self.split_depth(x), self.stage_levels, strict=True):
            inputs = self._scale(part, levels)
            out.append(stage.log_prob_slices(part, inputs, extra, targets))  # (B, n)
            extra = inputs
        return out

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.stages) == 1:
            return super().log_prob(x, cond)
        return sum(self.stage_log_probs(x, cond))

    def estimate_log_prob(self, x, cond=None, num_slices: int | None = None, generator=None) -> torch.Tensor:
        """Unbiased estimate of log p(x), (B,), from ``num_slices`` random target slices per image and stage.

        Memory is that of ``num_slices`` slices, not of the image. ``num_slices`` None: ``self.train_slices``;
        0 or S*S: the exact log-likelihood.
        """
        t = self.scale * self.scale
        n = self.train_slices if num_slices is None else num_slices
        if n in (0, t):
            return sum(self.stage_log_probs(x, cond))
        noise = torch.rand(x.shape[0], t, generator=generator, device=x.device)  # (B, T)
        targets = noise.argsort(dim=1)[:, :n]  # (B, n) distinct slices per image
        return sum(lp.sum(1) for lp in self._slice_log_probs(x, cond, targets)) * (t / n)

    def training_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Scalar training loss: the estimated negative log-likelihood in nats per dimension, on
        ``train_slices`` random slices per image (its expectation is ``-log_prob(x).mean() / num_dims``)."""
        return -self.estimate_log_prob(x, cond, generator=generator).mean() / self.num_dims

    # ----- sampling -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, cond=None, known=None, known_mask=None, temperature=1.0, generator=None, method="auto",
               progress=False) -> torch.Tensor:  # fmt: skip
        """See ``AutoregressiveModel.sample``. With depth upscaling there is no per-sub-pixel order for the generic
        naive sampler, so method="naive" runs this model's stage-by-stage sampler in its naive mode."""
        self._naive_stages = method == "naive" and len(self.stages) > 1
        try:
            method = "fast" if self._naive_stages else method
            return super().sample(n, cond, known, known_mask, temperature, generator, method, progress)
        finally:
            self._naive_stages = False

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False, trace=None):
        """Slice by slice: the context network runs once per slice, the slice decoder once per step on that slice.

        ``trace`` gets (step index, params) per step; with depth upscaling the LSB stage's steps are numbered
        after the MSB stage's (len(order()) + i) and match the LSB part of ``network``'s output.
        """
        naive = self._naive_stages
        device = next(self.parameters()).device
        steps, s = self.order(), self.scale
        per_slice = len(steps) // (s * s)
        known_parts = None if known is None else self.split_depth(known)
        parts, extra, extra_planes = [], None, None
        bar = tqdm(total=len(steps) * len(self.stages), disable=not progress, desc="sampling", leave=False)
        for k, (stage, levels) in enumerate(zip(self.stages, self.stage_levels, strict=True)):
            x = torch.zeros(n, *self.image_shape, dtype=torch.long, device=device)
            x = x if known is None else known_parts[k].clone()
            for i, (h, w, channels) in enumerate(steps):
                inputs = self._scale(x, levels)  # (n, C, H, W)
                if naive:
                    params = from_slices(stage(inputs, extra), s)[:, :, h, w]  # (n, P)
                else:
                    if i % per_slice == 0:  # a new slice: its context, computed once
                        decoder, cond_map = stage.slice_decoder(to_slices(inputs, s), i // per_slice, extra_planes)
                    current = inputs[:, :, h % s :: s, w % s :: s]  # (n, C, H/S, W/S)
                    params = decoder(current, cond_map)[:, :, h // s, w // s]  # (n, P)
                if trace is not None:
                    trace.append((k * len(steps) + i, params.float()))
                keep = None if known_mask is None else known_mask[:, :, h, w]
                x[:, :, h, w] = stage.head.sample(params.float(), x[:, :, h, w], channels, keep, temperature, generator)
                bar.update()
            parts.append(x)
            extra = self._scale(x, levels)
            extra_planes = to_slices(extra, s).flatten(1, 2)  # (n, T*C, H/S, W/S)
        bar.close()
        return parts[0] if len(parts) == 1 else parts[0] * self.stage_levels[1] + parts[1]
