"""Subscale Pixel Networks (Menick & Kalchbrenner 2018, "Generating High Fidelity Images with Subscale Pixel
Networks and Multidimensional Upscaling", ICLR 2019).

- Subscale ordering (Figure 3): the image is cut into S*S interleaved slices ``x[:, :, a::S, b::S]``
  (``pixelmodels.nn.subscale``), generated in raster order of (a, b); inside a slice, raster order and R -> G -> B.
- Context network (the paper's embedding of the previous slices): at slice resolution, over every slice stacked on
  the channel axis with the slices not yet generated set to zero (and, for a conditional stage, the given image
  stacked the same way); a conv embedding, a learned embedding of the target slice's meta-position and a learned
  position embedding, residual convs, then unmasked self-attention over the slice positions: with at least one
  attention layer every position of the context map reads every earlier slice whole (tested by gradients).
- Decoder: a mask-A convolutional embedding of the target slice, then masked self-attention blocks over its
  positions in raster order (``pixelmodels.nn.attention``: strictly-earlier positions, R -> G -> B groups inside a
  pixel; no blind spot), the context map added at every position of every block. One decoder, weights shared by
  all slices.
- Training on slices: ``estimate_log_prob`` draws ``train_slices`` random target slices per image and scales
  their log-likelihood by S*S / train_slices (unbiased), so activations are those of ``train_slices`` slices.
  ``log_prob`` sums all S*S slices exactly.
- Cached decoding inside a slice: ``fast_sample`` runs the context network once per slice and steps the decoder
  one position at a time with a key/value cache (``SliceDecoder.stepper``).

Multidimensional upscaling lives in ``pixelmodels.models.stages``: a first stage (the small first-slice image, or
the MSB image) made by its own model, and a conditional SPN (``SubscaleNetwork`` with ``first_slice_given`` or
``given_channels``) for the rest.

Deviations from the paper (whose text beyond the abstract could not be read here):
- The layer recipe (conv + attention context network, pre-norm blocks with a 2x GELU feed-forward, a learned null
  key/value so the first position is defined) and all sizes are our choices.
- No class or other conditioning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pixelmodels.heads import Head
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.nn import MaskedConv2d
from pixelmodels.nn.attention import DecoderStack, GroupedLayerNorm, MaskedLinear, TransformerBlock, run_blocks
from pixelmodels.nn.subscale import earlier_slices, from_slices, to_slices
from pixelmodels.ordering import Step, subscale_order
from pixelmodels.registry import register


class ContextNetwork(nn.Module):
    """Earlier slices (+ given planes) -> a context map (B, hc, h, w) with image-wide reach at slice resolution."""

    def __init__(self, in_channels, hidden, conv_layers, attention_layers, heads, num_slices, slice_hw):  # fmt: skip
        super().__init__()
        self.input_conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.meta_position = nn.Embedding(num_slices, hidden)
        self.position = nn.Parameter(torch.randn(hidden, *slice_hw) * 0.02)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, hidden, 1))
            for _ in range(conv_layers)
        )
        self.attention = nn.ModuleList(TransformerBlock(hidden, heads) for _ in range(attention_layers))
        self.recompute = False  # activation checkpointing of the attention blocks (nn.attention.run_blocks)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """x: (B, Cin, h, w); targets: (B,) slice indices -> (B, hc, h, w)."""
        y = self.input_conv(x) + self.meta_position(targets)[:, :, None, None] + self.position
        for conv in self.convs:
            y = y + conv(y)
        if not len(self.attention):
            return y
        seq = run_blocks(self.attention, y.flatten(2).transpose(1, 2), recompute=self.recompute)  # (B, h*w, hc)
        return seq.transpose(1, 2).reshape(y.shape)


class SliceDecoder(nn.Module):
    """Mask-A conv embedding of the target slice + causal attention blocks conditioned on the context map."""

    def __init__(self, channels, groups, dim, layers, heads, first_kernel_size, cond_dim, num_params):  # fmt: skip
        super().__init__()
        self.embed = MaskedConv2d(channels, dim, first_kernel_size, "A", groups)
        self.cond = nn.Linear(cond_dim, dim)
        self.stack = DecoderStack(dim, heads, groups, layers, cond_dim, channels)
        self.norm = GroupedLayerNorm(dim, groups)
        self.out = MaskedLinear(dim, num_params, groups)

    def _head(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.norm(y)))

    def forward(self, current: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """current: (B, C, h, w) scaled target slice; context: (B, hc, h, w) -> parameters (B, P, h, w)."""
        b, _, h, w = current.shape
        cond = context.flatten(2).transpose(1, 2)  # (B, h*w, hc)
        y = self.embed(current).flatten(2).transpose(1, 2) + self.cond(cond)  # (B, h*w, D)
        y = self._head(self.stack(y, cond, current.flatten(2).transpose(1, 2)))  # (B, h*w, P)
        return y.transpose(1, 2).reshape(b, -1, h, w)

    def stepper(self, context: torch.Tensor) -> SliceStepper:
        return SliceStepper(self, context)


class SliceStepper:
    """Cached decoding of one slice: the embedding on the kernel window of the step, then the stack's KV caches."""

    def __init__(self, decoder: SliceDecoder, context: torch.Tensor):
        b, _, h, w = context.shape
        self.decoder, self.width = decoder, w
        self.cond = context.flatten(2).transpose(1, 2)  # (B, h*w, hc)
        self.stack = decoder.stack.stepper(b, h * w, context)
        self.pad = decoder.embed.kernel_size[0] // 2, decoder.embed.kernel_size[1] // 2

    def step(self, current: torch.Tensor, i: int, j: int, commit: bool) -> torch.Tensor:
        """Parameters (B, P) at slice position (i, j) given the slice canvas ``current`` (B, C, h, w); ``commit``
        after the position's last colour (its keys/values go into the caches)."""
        emb = self.decoder.embed
        ph, pw = self.pad
        window = F.pad(current, (pw, pw, ph, ph))[:, :, i : i + 2 * ph + 1, j : j + 2 * pw + 1]  # (B, C, kh, kw)
        y = F.conv2d(window, emb.weight * emb.mask, emb.bias).flatten(1)[:, None]  # (B, 1, D)
        cond = self.cond[:, i * self.width + j][:, None]  # (B, 1, hc)
        pixels = current.flatten(2).transpose(1, 2)  # (B, h*w, C)
        y = self.stack.step(y + self.decoder.cond(cond), cond, commit, pixels)
        return self.decoder._head(y)[:, 0]


class SubscaleNetwork(nn.Module):
    """One SPN over images with ``head.num_levels`` values: context network + slice decoder.

    ``first_slice_given``: slice 0 is given (size upscaling's second stage) and only slices 1.. are modelled.
    ``given_channels``: a fully visible image of that many channels conditions every slice through the context
    network (depth upscaling's LSB stage: the MSB image).
    """

    def __init__(self, image_shape, head: Head, scale, hidden, layers, heads, context_channels, context_layers,
                 context_attention_layers, first_kernel_size, given_channels=0, first_slice_given=False,
                 recompute=False):  # fmt: skip
        super().__init__()
        c, height, width = image_shape
        if scale < 1 or height % scale or width % scale:
            raise ValueError(f"image size {height}x{width} is not divisible by the subscale factor {scale}")
        groups = 1 if head.joint_channels else c
        if hidden % groups or hidden < 3 * groups or heads % groups or hidden % heads:
            raise ValueError(
                f"hidden_channels ({hidden}) must split into num_heads ({heads}) heads, the heads into the {groups}"
                f" colour groups, and give each group >= 3 channels (a LayerNorm over fewer is nearly constant)"
            )
        if context_channels % heads:
            raise ValueError(f"context_channels ({context_channels}) must be divisible by num_heads ({heads})")
        t = scale * scale
        self.image_shape, self.scale, self.num_slices = tuple(image_shape), scale, t
        self.first_slice = 1 if first_slice_given else 0
        self.given_channels = given_channels
        hw = (height // scale, width // scale)
        self.context = ContextNetwork(
            t * (c + given_channels), context_channels, context_layers, context_attention_layers, heads, t, hw
        )
        self.decoder = SliceDecoder(c, groups, hidden, layers, heads, first_kernel_size, context_channels,
                                    head.num_params)  # fmt: skip
        self.context.recompute = self.decoder.stack.recompute = recompute

    def order(self, joint_channels: bool) -> list[Step]:
        steps = subscale_order(*self.image_shape, self.scale, joint_channels=joint_channels)
        return steps[len(steps) * self.first_slice // self.num_slices :]

    def _context(self, slices, targets, given_planes):
        """slices (B, T, C, h, w), targets (B, n), given planes (B, T*Cg, h, w) -> context maps (B*n, hc, h, w)."""
        b, n = targets.shape
        x = earlier_slices(slices, targets)  # (B, n, T*C, h, w)
        if given_planes is not None:
            x = torch.cat([x, given_planes[:, None].expand(b, n, *given_planes.shape[1:])], dim=2)
        return self.context(x.flatten(0, 1), targets.flatten())

    def forward(self, inputs, given=None, targets=None) -> torch.Tensor:
        """Teacher-forced parameters of the target slices.

        Args:
            inputs: (B, C, H, W) scaled images; given: (B, Cg, H, W) scaled given image or None.
            targets: (B, n) long target slice indices (default: every modelled slice in order).
        Returns:
            (B, n, P, H/S, W/S).
        """
        slices = to_slices(inputs, self.scale)  # (B, T, C, h, w)
        b, _, _, h, w = slices.shape
        if targets is None:
            targets = torch.arange(self.first_slice, self.num_slices, device=inputs.device).expand(b, -1)
        current = slices[torch.arange(b, device=inputs.device)[:, None], targets].flatten(0, 1)  # (B*n, C, h, w)
        given_planes = None if given is None else to_slices(given, self.scale).flatten(1, 2)
        params = self.decoder(current, self._context(slices, targets, given_planes))
        return params.view(b, targets.shape[1], -1, h, w)

    def log_prob_slices(self, head: Head, x, inputs, given=None, targets=None) -> torch.Tensor:
        """log p of the target slices of the integer images ``x`` (B, C, H, W): (B, n)."""
        params = self(inputs, given, targets)  # (B, n, P, h, w)
        b, n = params.shape[:2]
        xs = to_slices(x, self.scale)  # (B, T, C, h, w)
        idx = targets if targets is not None else torch.arange(self.first_slice, self.num_slices).expand(b, -1)
        xs = xs[torch.arange(b, device=x.device)[:, None], idx.to(x.device)]  # (B, n, C, h, w)
        logp = head.log_prob(params.flatten(0, 1).float(), xs.flatten(0, 1))  # (B*n, C, h, w)
        return logp.sum(dim=(1, 2, 3)).view(b, n)

    def estimate_log_prob(self, head, x, inputs, given, num_slices: int, generator=None) -> torch.Tensor:
        """Unbiased estimate of the summed log p of the modelled slices from ``num_slices`` random ones (0: all)."""
        modelled = self.num_slices - self.first_slice
        if num_slices in (0, modelled):
            return self.log_prob_slices(head, x, inputs, given).sum(1)
        noise = torch.rand(x.shape[0], modelled, generator=generator, device=x.device)  # (B, T')
        targets = noise.argsort(dim=1)[:, :num_slices] + self.first_slice  # (B, n) distinct slices
        return self.log_prob_slices(head, x, inputs, given, targets).sum(1) * (modelled / num_slices)

    @torch.no_grad()
    def sample(self, head: Head, x, scale_fn, given=None, known_mask=None, temperature=1.0, generator=None,
               progress=False, trace=None, naive=False) -> torch.Tensor:  # fmt: skip
        """Fill the modelled slices of the canvas ``x`` (n, C, H, W) (known values and a given slice 0 already in
        it) slice by slice: the context once per slice, then cached decoder steps (``naive``: the whole slice
        network per step). ``head.sample`` draws every step, in ``order()``; ``trace`` gets (step, params)."""
        s, c = self.scale, self.image_shape[0]
        given_planes = None if given is None else to_slices(given, s).flatten(1, 2)
        steps = self.order(head.joint_channels)
        per_slice = len(steps) // (self.num_slices - self.first_slice)
        bar = tqdm(total=len(steps), disable=not progress, desc="sampling", leave=False)
        for i, step in enumerate(steps):
            t = self.first_slice + i // per_slice
            targets = torch.full((x.shape[0], 1), t, device=x.device)
            if naive:
                params = self(scale_fn(x), given, targets)[:, 0, :, step.h // s, step.w // s]  # (n, P)
            else:
                if i % per_slice == 0:  # a new slice: its context, computed once
                    context = self._context(to_slices(scale_fn(x), s), targets, given_planes)  # (n, hc, h, w)
                    stepper = self.decoder.stepper(context)
                current = scale_fn(x[:, :, t // s :: s, t % s :: s])  # (n, C, h, w)
                commit = step.channels[-1] == c - 1
                params = stepper.step(current, step.h // s, step.w // s, commit)  # (n, P)
            if trace is not None:
                trace.append((i, params.float()))
            keep = None if known_mask is None else known_mask[:, :, step.h, step.w]
            x[:, :, step.h, step.w] = head.sample(
                params.float(), x[:, :, step.h, step.w], step.channels, keep, temperature, generator
            )
            bar.update()
        bar.close()
        return x


@register("spn")
class SubscalePixelNetwork(AutoregressiveModel):
    """Subscale Pixel Network (one SPN over the whole image; multidimensional upscaling: ``models.stages``).

    Args:
        image_shape: (C, H, W); H and W divisible by ``scale``.
        num_levels: K.
        scale: subscale factor S (S*S slices of size H/S x W/S).
        hidden_channels: width D of the decoder (a multiple of ``num_heads``; its heads split into C groups).
        num_layers: masked self-attention blocks of the decoder.
        num_heads: attention heads (decoder and context network).
        context_channels: width of the context network (default: hidden_channels).
        context_layers: residual conv blocks of the context network.
        context_attention_layers: self-attention blocks of the context network (>= 1 for image-wide reach).
        first_kernel_size: the decoder's mask-A embedding convolution size.
        train_slices: target slices per image in ``estimate_log_prob`` / ``training_loss`` (0: all = exact).
        recompute: activation checkpointing of the attention blocks in training (same gradients, less memory).
        head: output distribution ("categorical" or "dmol").
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        scale: int = 2,
        hidden_channels: int = 48,
        num_layers: int = 4,
        num_heads: int = 3,
        context_channels: int | None = None,
        context_layers: int = 2,
        context_attention_layers: int = 2,
        first_kernel_size: int = 3,
        train_slices: int = 1,
        recompute: bool = False,
        head: str = "categorical",
    ):
        super().__init__(image_shape, num_levels, head)
        if num_layers < 0 or context_layers < 0 or context_attention_layers < 0:
            raise ValueError("num_layers, context_layers and context_attention_layers must be >= 0")
        if not 0 <= train_slices <= scale * scale:
            raise ValueError(f"train_slices must be in [0, {scale * scale}], got {train_slices}")
        self.scale = scale
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.context_channels = context_channels
        self.context_layers = context_layers
        self.context_attention_layers = context_attention_layers
        self.first_kernel_size = first_kernel_size
        self.train_slices = train_slices
        self.recompute = recompute
        self.core = SubscaleNetwork(
            self.image_shape, self.head, scale, hidden_channels, num_layers, num_heads,
            context_channels or hidden_channels, context_layers, context_attention_layers, first_kernel_size,
            recompute=recompute,
        )  # fmt: skip

    def order(self) -> list[Step]:
        """The subscale order (Figure 3)."""
        if self._order is None:
            self._order = self.core.order(self.head.joint_channels)
        return self._order

    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return from_slices(self.core(inputs), self.scale)  # (B, P, H, W)

    def estimate_log_prob(self, x, cond=None, num_slices: int | None = None, generator=None) -> torch.Tensor:
        """Unbiased estimate of log p(x), (B,), from ``num_slices`` random target slices per image (default
        ``train_slices``; 0 or S*S: exact). Memory is that of ``num_slices`` slices, not of the image."""
        self.check_images(x)
        self.check_cond(cond, x.shape[0])
        n = self.train_slices if num_slices is None else num_slices
        return self.core.estimate_log_prob(self.head, x, self.scale_input(x), None, n, generator)

    def training_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Estimated negative log-likelihood in nats per dimension on ``train_slices`` random slices per image."""
        return -self.estimate_log_prob(x, cond, generator=generator).mean() / self.num_dims

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False, trace=None):
        """Slice by slice: the context network once per slice, the decoder one cached step at a time.
        Every step draws through ``self.head.sample`` in ``order()`` (the codec relies on it)."""
        device = next(self.parameters()).device
        x = torch.zeros(n, *self.image_shape, dtype=torch.long, device=device) if known is None else known.clone()
        return self.core.sample(self.head, x, self.scale_input, None, known_mask, temperature, generator, progress,
                                trace)  # fmt: skip
