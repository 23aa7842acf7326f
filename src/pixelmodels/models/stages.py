"""Multidimensional upscaling in distinct stages (Menick & Kalchbrenner 2018, abstract: "via intermediate stages
utilising distinct SPNs"; depth: US 11,348,203, claim 1, the low bits conditioned on the most significant bits of
every pixel).

An image x is split into a first *view* v (a smaller or shallower image) and the rest; two distinct models are
composed into one exact model:

    log p(x) = log p_first(v) + log p_rest(rest | v)

- ``split="size"``, ``factor=S``: v = the first subscale slice ``x[:, :, ::S, ::S]`` (a downsampled image, K
  levels); the rest = slices 1 .. S*S-1 of x given slice 0 (a conditional SPN with ``first_slice_given``).
- ``split="depth"``, ``factor=m``: with K = 2^b, v = the m most significant bits of every sub-pixel (2^m levels);
  the rest = the b - m low bits given the whole MSB image (a conditional SPN with ``given_channels``; its context
  network reads every MSB).

The first stage is any registered model (``first={"name": ..., **hparams}``; image shape and levels come from the
split), including another ``staged`` model (e.g. a depth split whose MSB model is a size split). The rest stage
is a conditional model from ``CONDITIONAL`` (``rest={"name": "spn", **hparams}``); a conditional model provides
``head``, ``order()``, ``log_prob_given``, ``estimate_log_prob_given`` and ``sample_given`` (see
``ConditionalSPN``), and a new family (e.g. Multi-Scale PixelRNN's conditional network) registers there.

Stage by stage: with ``train_stage="first"`` (or ``"rest"``) ``estimate_log_prob``, hence the training loss,
is that stage's term alone (the other stage gets no gradient); ``stage_log_probs`` evaluates each term;
``pixelmodels compose`` joins the stages of separately trained runs into one. ``log_prob`` is always the exact sum.

Deviations from the paper: the stage models' recipe and sizes are ours; no class conditioning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelmodels.heads import build_head
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.models.spn import SubscaleNetwork
from pixelmodels.nn.subscale import from_slices, to_slices
from pixelmodels.ordering import Step
from pixelmodels.registry import build, register

STAGES = ("all", "first", "rest")


def _scale(x: torch.Tensor, levels: int) -> torch.Tensor:
    return x.float() * (2.0 / (levels - 1)) - 1.0


class ConditionalSPN(nn.Module):
    """The rest stage as a Subscale Pixel Network: slices 1.. given slice 0 (size), or the low bits given the MSB
    image (depth). Hyper-parameters as ``spn`` (``models/spn.py``)."""

    def __init__(self, image_shape, num_levels, given_levels, first_slice_given, *, scale=2, hidden_channels=48,
                 num_layers=4, num_heads=3, context_channels=None, context_layers=2, context_attention_layers=2,
                 first_kernel_size=3, train_slices=1, recompute=False, head="categorical"):  # fmt: skip
        super().__init__()
        c = image_shape[0]
        self.num_levels, self.given_levels, self.train_slices = num_levels, given_levels, train_slices
        self.head = build_head(head, c, num_levels)
        self.core = SubscaleNetwork(
            image_shape, self.head, scale, hidden_channels, num_layers, num_heads, context_channels or hidden_channels,
            context_layers, context_attention_layers, first_kernel_size, c if given_levels else 0, first_slice_given,
            recompute,
        )  # fmt: skip

    def order(self) -> list[Step]:
        return self.core.order(self.head.joint_channels)

    def _given(self, given):
        return None if not self.given_levels else _scale(given, self.given_levels)

    def log_prob_given(self, x: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """Exact log p(rest of x | given), (B,); x (B, C, H, W) in [0, num_levels) (slice 0 = the given slice)."""
        return self.core.log_prob_slices(self.head, x, _scale(x, self.num_levels), self._given(given)).sum(1)

    def log_prob_map_given(self, x: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """log p of every modelled sub-pixel (B, C, H, W), zero on a given first slice; sums to ``log_prob_given``."""
        core = self.core
        params = core(_scale(x, self.num_levels), self._given(given))  # (B, n, P, h, w)
        b, n = params.shape[:2]
        xs = to_slices(x, core.scale)[:, core.first_slice :]  # (B, n, C, h, w)
        logp = self.head.log_prob(params.flatten(0, 1).float(), xs.flatten(0, 1)).view(b, n, *xs.shape[2:])
        return from_slices(F.pad(logp, (0, 0, 0, 0, 0, 0, core.first_slice, 0)), core.scale)  # (B, C, H, W)

    def estimate_log_prob_given(self, x, given, generator=None) -> torch.Tensor:
        inputs = _scale(x, self.num_levels)
        return self.core.estimate_log_prob(self.head, x, inputs, self._given(given), self.train_slices, generator)

    def sample_given(self, canvas, given, known_mask=None, temperature=1.0, generator=None, progress=False,
                     naive=False, trace=None) -> torch.Tensor:  # fmt: skip
        """Fill ``canvas`` (n, C, H, W; known values and, for size, slice 0 already in it), drawing every step
        through ``self.head.sample`` in ``order()``."""
        scale_fn = lambda v: _scale(v, self.num_levels)  # noqa: E731
        return self.core.sample(self.head, canvas, scale_fn, self._given(given), known_mask, temperature,
                                generator, progress, trace, naive)  # fmt: skip


CONDITIONAL: dict[str, type[nn.Module]] = {"spn": ConditionalSPN}


@register("staged")
class StagedModel(AutoregressiveModel):
    """A first-stage model of a view of the image composed with a conditional model of the rest.

    Args:
        image_shape, num_levels: of the whole image.
        split: "size" (first view: slice 0 of the S x S subscale slicing) or "depth" (first view: the MSBs).
        factor: S for "size"; the number m of most significant bits for "depth" (K = 2^b, 0 < m < b).
        first: config of the first-stage model, {"name": registered model, **hparams} (default: an ``spn``).
        rest: config of the conditional model, {"name": a key of ``CONDITIONAL``, **hparams} (default: ``spn``;
            with "size" its subscale factor is ``factor``).
        train_stage: "all", "first" or "rest": which terms ``estimate_log_prob`` (the training objective) has.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_levels: int,
        *,
        split: str = "depth",
        factor: int = 3,
        first: dict | None = None,
        rest: dict | None = None,
        train_stage: str = "all",
    ):
        super().__init__(image_shape, num_levels, "categorical")
        c, h, w = self.image_shape
        if split not in ("size", "depth"):
            raise ValueError(f"split must be 'size' or 'depth', got {split!r}")
        if train_stage not in STAGES:
            raise ValueError(f"train_stage must be one of {', '.join(STAGES)}, got {train_stage!r}")
        self.split, self.factor, self.train_stage = split, int(factor), train_stage
        self.first = dict(first or {"name": "spn"})
        self.rest = dict(rest or {"name": "spn"})
        rest_hparams = {k: v for k, v in self.rest.items() if k != "name"}
        if self.rest.get("name") not in CONDITIONAL:
            raise ValueError(f"unknown conditional model {self.rest.get('name')!r}; available: {list(CONDITIONAL)}")
        if split == "size":
            s = self.factor
            if s < 2 or h % s or w % s:
                raise ValueError(f"split='size' needs a factor S >= 2 dividing the image size {h}x{w}, got {s}")
            if rest_hparams.setdefault("scale", s) != s:
                raise ValueError(f"the rest stage's scale ({rest_hparams['scale']}) must equal factor ({s})")
            first_shape, first_levels, rest_levels, given_levels = (c, h // s, w // s), self.num_levels, num_levels, 0
        else:
            bits = self.num_levels.bit_length() - 1
            if self.num_levels != 1 << bits or not 0 < self.factor < bits:
                raise ValueError(f"split='depth' with factor={factor} needs num_levels = 2^b, b > {factor}")
            first_shape, first_levels = self.image_shape, 1 << self.factor
            rest_levels, given_levels = self.num_levels >> self.factor, first_levels
        if "name" not in self.first:
            raise ValueError(f"first must name a registered model, e.g. {{'name': 'spn', ...}}; got {self.first}")
        first_hparams = {k: v for k, v in self.first.items() if k != "name"}
        self.first_model = build(self.first["name"], first_shape, first_levels, **first_hparams)
        self.rest_model = CONDITIONAL[self.rest["name"]](
            self.image_shape, rest_levels, given_levels, split == "size", **rest_hparams
        )
        self._naive = False

    # ----- views -------------------------------------------------------------------------------------------------
    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Integer images -> (first view, rest target, given image for the rest stage)."""
        if self.split == "size":
            return x[:, :, :: self.factor, :: self.factor], x, None
        low = self.num_levels >> self.factor
        msb = torch.div(x, low, rounding_mode="floor")
        return msb, x % low, msb

    def merge(self, first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        return rest if self.split == "size" else first * (self.num_levels >> self.factor) + rest

    def _rest_canvas(self, first: torch.Tensor, known_rest: torch.Tensor | None, n: int) -> torch.Tensor:
        if known_rest is None:
            known_rest = first.new_zeros(n, *self.image_shape)
        canvas = known_rest.clone()
        if self.split == "size":
            canvas[:, :, :: self.factor, :: self.factor] = first
        return canvas

    # ----- the contract ------------------------------------------------------------------------------------------
    def order(self) -> list[Step]:
        """The first stage's steps (in image coordinates), then the rest stage's: with "depth" every sub-pixel
        appears twice (MSBs, then low bits), so there is no single step per sub-pixel."""
        if self._order is None:
            s = self.factor if self.split == "size" else 1
            first = [Step(h * s, w * s, ch) for h, w, ch in self.first_model.order()]
            self._order = first + self.rest_model.order()
        return self._order

    @property
    def supports_fixed_point(self) -> bool:
        return False  # each stage walks its own order with its own head: no single network to iterate

    def network(self, inputs, cond=None):
        raise ValueError("a staged model has one network per stage: use log_prob or stage_log_probs")

    def stage_log_probs(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Exact log-likelihood of each stage, (B,) each: {"first": log p(v), "rest": log p(rest | v)}."""
        self.check_images(x)
        self.check_cond(cond, x.shape[0])
        first, rest, given = self.views(x)
        return {"first": self.first_model.log_prob(first), "rest": self.rest_model.log_prob_given(rest, given)}

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return sum(self.stage_log_probs(x, cond).values())

    def log_prob_map(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sub-pixel log-probabilities (B, C, H, W) summing to ``log_prob``: each sub-pixel's first-stage term
        (size: at slice 0; depth: its MSBs) plus its rest-stage term (``explain.nll_map`` uses it)."""
        self.check_images(x)
        first, rest, given = self.views(x)
        if hasattr(self.first_model, "log_prob_map"):
            first_map = self.first_model.log_prob_map(first)
        else:
            first_map = self.first_model.head.log_prob(self.first_model(first).float(), first)
        out = self.rest_model.log_prob_map_given(rest, given)
        if self.split == "size":
            out[:, :, :: self.factor, :: self.factor] += first_map
            return out
        return out + first_map

    def estimate_log_prob(self, x, cond=None, generator=None) -> torch.Tensor:
        """Unbiased estimate of the terms ``train_stage`` selects (each stage on its own training slices)."""
        self.check_images(x)
        first, rest, given = self.views(x)
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        if self.train_stage in ("all", "first"):
            estimate = getattr(self.first_model, "estimate_log_prob", self.first_model.log_prob)
            total = total + estimate(first)
        if self.train_stage in ("all", "rest"):
            total = total + self.rest_model.estimate_log_prob_given(rest, given, generator)
        return total

    def training_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        return -self.estimate_log_prob(x, cond, generator).mean() / self.num_dims

    # ----- sampling ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, cond=None, known=None, known_mask=None, temperature=1.0, generator=None, method="auto",
               progress=False) -> torch.Tensor:  # fmt: skip
        """See ``AutoregressiveModel.sample``: the first stage's image, then the rest given it. ``method``
        applies to both stages ("naive": the rest stage reruns its network per step)."""
        if method == "fixed_point":  # refused by the base class with a clear message
            return super().sample(n, cond, known, known_mask, temperature, generator, method, progress)
        self._naive = method == "naive"
        try:
            return super().sample(n, cond, known, known_mask, temperature, generator, "fast", progress)
        finally:
            self._naive = False

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False, trace=None):
        first_known = first_mask = rest_known = rest_mask = None
        if known is not None:
            first_known, rest_known, _ = self.views(known)
            first_mask = known_mask[:, :, :: self.factor, :: self.factor] if self.split == "size" else known_mask
            rest_mask = known_mask
        method = "naive" if self._naive else "auto"
        first = self.first_model.sample(n, None, first_known, first_mask, temperature, generator, method, progress)
        canvas = self._rest_canvas(first, rest_known, n)
        given = first if self.split == "depth" else None
        rest = self.rest_model.sample_given(canvas, given, rest_mask, temperature, generator, progress, self._naive,
                                            trace)  # fmt: skip
        return self.merge(first, rest)

    # ----- the codec: each stage coded by its own model --------------------------------------------------------
    def coding_stages(self):
        """(first model, rest model, views, canvas builder, merge) for ``pixelmodels.codec``."""
        return self.first_model, self.rest_model, self.views, self._rest_canvas, self.merge
