"""Multi-Scale PixelRNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent Neural Networks", ICML;
arXiv 1601.06759v3, section 3.6).

Two networks: an unconditional PixelRNN generates a small s x s image subsampled from the n x n image, and a
conditional PixelRNN then generates the n x n image given it. Here the small image is the first subscale slice
``x[:, :, ::S, ::S]`` (s = n / S), and the composition is ``models.stages.StagedModel`` with ``split="size"``:

    log p(x) = log p_first(x[:, :, ::S, ::S]) + log p_rest(every other pixel | x[:, :, ::S, ::S])

so ``log_prob`` stays exact (the pixels of the small image are given to the second network, not generated
again). ``ConditionalPixelRNN`` is that second network (registered as the rest stage ``"pixelrnn"``):

- upsampling (section 3.6): a convolutional network with a deconvolution layer enlarges the small image to a
  c x n x n conditioning map (``map_channels`` = c; 3x3 conv, ReLU, S x S transposed conv of stride S);
- biasing: for every layer a 1x1 unmasked convolution maps the conditioning map to the layer's gates (4h, or
  4h per direction for the Diagonal BiLSTM), added to the input-to-state map (``PixelRNN.conditioned_network``);
- a Row LSTM or Diagonal BiLSTM (``model``) over the whole n x n image in raster order, with the small image's
  pixels fixed: they are known during sampling and left out of the likelihood.
The map reads only the given small image, so it may see pixels after the current one: causality holds for the
generated pixels (tested by gradients).

Build it through the staged model (``pixelmodels.build("staged", ..., split="size", factor=S, first={"name":
"row_lstm", ...}, rest={"name": "pixelrnn", "model": "row_lstm", ...})``); preset ``multiscale_pixelrnn-digits``.

Deviations from the paper: the upsampling network's shape (one 3x3 conv and one S x S deconvolution) and the
model sizes are ours (the paper gives none); the small image is a subsampled slice of the image itself (the
paper's "subsampled from the original image"), not a blurred or averaged one; no class conditioning.
"""

from __future__ import annotations

import torch
from torch import nn

from pixelmodels.models.pixelrnn import DiagonalBiLSTM, PixelRNN, RowLSTM
from pixelmodels.models.stages import CONDITIONAL
from pixelmodels.ordering import Step

FAMILIES: dict[str, type[PixelRNN]] = {"row_lstm": RowLSTM, "diagonal_bilstm": DiagonalBiLSTM}


class ConditionalPixelRNN(nn.Module):
    """Section 3.6's conditional network: the image given its first S x S subscale slice.

    Args:
        image_shape, num_levels: of the whole image.
        given_levels: must be 0 (the small image is part of the image; set by ``StagedModel``).
        first_slice_given: must be True (``split="size"``; set by ``StagedModel``).
        scale: S, the subsampling factor (``StagedModel`` sets it to its ``factor``).
        model: "row_lstm" or "diagonal_bilstm".
        map_channels: c, the conditioning map's channels (default 2h).
        **hparams: the PixelRNN's own (``hidden_channels``, ``num_layers``, ``first_kernel_size``, ...).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        given_levels: int,
        first_slice_given: bool,
        *,
        scale: int = 2,
        model: str = "row_lstm",
        map_channels: int | None = None,
        **hparams,
    ):
        super().__init__()
        if given_levels or not first_slice_given:
            raise ValueError("the Multi-Scale PixelRNN conditions on a subsampled image: use split='size'")
        if model not in FAMILIES:
            raise ValueError(f"model must be one of {', '.join(FAMILIES)}, got {model!r}")
        self.scale, self.num_levels = scale, num_levels
        self.net = FAMILIES[model](image_shape, num_levels, **hparams)
        self.head = self.net.head
        c, height, width = self.net.image_shape
        h = self.net.hidden_channels
        m = map_channels or 2 * h
        self.upsample = nn.Sequential(
            nn.Conv2d(c, m, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(m, m, scale, stride=scale)
        )  # (B, C, s, s) -> (B, m, n, n)
        gates = 4 * h * (2 if model == "diagonal_bilstm" else 1)
        self.biases = nn.ModuleList(nn.Conv2d(m, gates, 1) for _ in range(self.net.num_layers))
        given = torch.zeros(c, height, width, dtype=torch.bool)
        given[:, ::scale, ::scale] = True
        self.register_buffer("given_mask", given, persistent=False)  # (C, H, W): the small image's sub-pixels

    def order(self) -> list[Step]:
        """Raster order over the pixels that are not in the small image."""
        s = self.scale
        return [step for step in self.net.order() if step[0] % s or step[1] % s]

    def gate_biases(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the bias of its input-to-state gates, from the small image in the scaled ``inputs``
        (B, C, H, W) in [-1, 1]."""
        cond_map = self.upsample(inputs[:, :, :: self.scale, :: self.scale])  # (B, m, H, W)
        return [bias(cond_map) for bias in self.biases]

    def params(self, x: torch.Tensor) -> torch.Tensor:
        """Head parameters (B, P, H, W) of the integer images ``x`` (its small image is the condition)."""
        inputs = self.net.scale_input(x)  # (B, C, H, W)
        return self.net.conditioned_network(inputs, self.gate_biases(inputs))

    def log_prob_map_given(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """log p of every modelled sub-pixel (B, C, H, W), zero on the small image; sums to ``log_prob_given``."""
        per_subpixel = self.head.log_prob(self.params(x).float(), x)  # (B, C, H, W)
        return per_subpixel.masked_fill(self.given_mask, 0.0)

    def log_prob_given(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(pixels outside the small image | the small image), (B,)."""
        return self.log_prob_map_given(x, given).sum(dim=(1, 2, 3))

    def estimate_log_prob_given(self, x, given=None, generator=None) -> torch.Tensor:
        return self.log_prob_given(x, given)

    @torch.no_grad()
    def sample_given(self, canvas, given=None, known_mask=None, temperature=1.0, generator=None, progress=False,
                     naive=False, trace=None) -> torch.Tensor:  # fmt: skip
        """Fill ``canvas`` (n, C, H, W; the small image and any known values already in it) in raster order,
        drawing through ``self.head`` at the steps of ``order()`` only (so the codec can stand in for it).
        ``trace`` gets ``(step, params)`` for every step of the full raster order (the small image's steps
        included: they draw nothing). ``naive`` reruns the whole network per step."""
        n = canvas.shape[0]
        keep = self.given_mask.expand_as(canvas)
        if known_mask is not None:
            keep = keep | known_mask
        biases = self.gate_biases(self.net.scale_input(canvas))  # the small image is final: one map
        s = self.scale
        own_head = self.net.head
        self.net.head = GeneratedStepsOnly(self.head, [h % s == 0 and w % s == 0 for h, w, _ in self.net.order()])
        try:
            if not naive:
                return self.net.conditioned_sample(n, canvas, keep, biases, temperature, generator, progress, trace)
            x = canvas.clone()
            for index, (h, w, channels) in enumerate(self.net.order()):
                params = self.net.conditioned_network(self.net.scale_input(x), biases)[:, :, h, w]  # (n, P)
                if trace is not None:
                    trace.append((index, params.clone()))
                x[:, :, h, w] = self.net.head.sample(params.float(), x[:, :, h, w], channels, keep[:, :, h, w],
                                                     temperature, generator)  # fmt: skip
            return x
        finally:
            self.net.head = own_head


class GeneratedStepsOnly(nn.Module):
    """Stands in for a head during ``sample_given``: the full raster loop calls ``sample`` at every step, and at
    the small image's steps (``skip[i]`` for the i-th call) it returns the given values without drawing."""

    def __init__(self, head: nn.Module, skip: list[bool]):
        super().__init__()
        self.inner, self.skip, self.calls = head, skip, 0
        self.num_params, self.joint_channels = head.num_params, head.joint_channels

    def param_indices(self, channel: int) -> list[int]:
        return self.inner.param_indices(channel)

    def sample(self, params, x, channels, keep=None, temperature=1.0, generator=None):
        skip, self.calls = self.skip[self.calls], self.calls + 1
        return x if skip else self.inner.sample(params, x, channels, keep, temperature, generator)


CONDITIONAL["pixelrnn"] = ConditionalPixelRNN
