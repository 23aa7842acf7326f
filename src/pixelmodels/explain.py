"""What a model looks at and where it is surprised: receptive fields, per-pixel NLL, order and size summaries.

Everything here uses only the model contract (``network`` on float inputs, ``head.param_indices``,
``head.log_prob``, ``order()``), so it works unchanged for every registered model.

- ``receptive_field``: which input sub-pixels the distribution of one sub-pixel depends on, from gradients
  (the same measurement as the contract's causality test, summed over a few random inputs).
- ``nll_map``: -log2 p of every pixel (summed over its channels); it sums to the image's NLL in bits.
- ``describe_order``, ``parameter_table``, ``summarize``: the text half of ``pixelmodels inspect``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pixelmodels.ordering import rank_map, raster_order, subscale_order


def _check_position(model, position: tuple[int, int], channel: int) -> tuple[int, int]:
    c, h, w = model.image_shape
    if len(position) != 2 or not (0 <= position[0] < h and 0 <= position[1] < w):
        raise ValueError(f"position must be (h, w) inside the {h}x{w} image, got {tuple(position)}")
    if not 0 <= channel < c:
        raise ValueError(f"channel must be in [0, {c}), got {channel}")
    return int(position[0]), int(position[1])


def receptive_field(
    model,
    position: tuple[int, int],
    channel: int = 0,
    cond: torch.Tensor | None = None,
    num_inputs: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gradient magnitude of one sub-pixel's distribution parameters w.r.t. every input sub-pixel.

    Args:
        model: any registered model.
        position: (h, w) of the target pixel.
        channel: colour channel of the target sub-pixel.
        cond: optional class label(s), one int or (num_inputs,), for class-conditional models.
        num_inputs: random inputs in [-1, 1] the magnitudes are averaged over (several, so that an input that
            happens to switch a ReLU off does not hide a real dependency).
    Returns:
        (C, H, W) float tensor, mean |d params / d input| over the inputs; ``> 0`` is the receptive field.
    """
    h, w = _check_position(model, position, channel)
    device = next(model.parameters()).device
    idx = model.head.param_indices(channel)
    cond = model.check_cond(cond, num_inputs, device)
    generator = generator or torch.Generator().manual_seed(0)  # the same map every call
    inputs = torch.rand(num_inputs, *model.image_shape, generator=generator).mul(2).sub(1).to(device)  # (N, C, H, W)
    inputs.requires_grad_(True)
    was_training = model.training
    model.eval()  # dropout off: the map shows the evaluated network
    try:
        with torch.enable_grad():
            params = model.network(inputs, cond)  # (N, P, H, W)
            (grad,) = torch.autograd.grad(params[:, idx, h, w].float().sum(), inputs)
    finally:
        model.train(was_training)
    return grad.abs().mean(0).detach().cpu()  # (C, H, W)


def context_mask(model, position: tuple[int, int], channel: int = 0) -> torch.Tensor:
    """(C, H, W) bool: the sub-pixels generated strictly before (channel, *position) in the model's order."""
    h, w = _check_position(model, position, channel)
    rank = rank_map(model.order(), *model.image_shape)
    return rank < rank[channel, h, w]


@dataclass
class FieldSummary:
    """Counts of a receptive field: ``seen`` of the ``context`` earlier sub-pixels influence the target."""

    seen: int  # earlier sub-pixels with a nonzero gradient
    context: int  # sub-pixels generated before the target
    blind: int  # earlier sub-pixels the model could use but does not see
    leaks: int  # later sub-pixels with a nonzero gradient (a causality bug; 0 for a correct model)
    seen_pixels: int  # spatial positions with any seen channel
    rows_up: int  # how far up / left / right the seen region reaches from the target
    cols_left: int
    cols_right: int

    def __str__(self) -> str:
        share = 100.0 * self.seen / self.context if self.context else 100.0
        return (
            f"sees {self.seen} of {self.context} earlier sub-pixels ({share:.0f}%) at {self.seen_pixels} pixels; "
            f"blind {self.blind}; reach {self.rows_up} rows up, {self.cols_left} columns left, "
            f"{self.cols_right} right; leaks {self.leaks}"
        )


def summarize_field(magnitude: torch.Tensor, context: torch.Tensor, position: tuple[int, int]) -> FieldSummary:
    seen = magnitude > 0
    pixels = seen.any(0).nonzero()  # (N, 2)
    h, w = position
    if len(pixels):
        up, left, right = h - int(pixels[:, 0].min()), w - int(pixels[:, 1].min()), int(pixels[:, 1].max()) - w
    else:
        up = left = right = 0
    return FieldSummary(
        seen=int((seen & context).sum()),
        context=int(context.sum()),
        blind=int((~seen & context).sum()),
        leaks=int((seen & ~context).sum()),
        seen_pixels=len(pixels),
        rows_up=max(up, 0),
        cols_left=max(left, 0),
        cols_right=max(right, 0),
    )


@torch.no_grad()
def nll_map(model, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel negative log-likelihood in bits, summed over channels: (B, H, W).

    Uses ``model.log_prob_map(x, cond) -> (B, C, H, W)`` nats when the model defines one (a model whose
    ``log_prob`` is not the sum of its head's log-probabilities, e.g. SPN with depth upscaling, must), else
    ``head.log_prob(model(x), x)``. The map is checked against ``model.log_prob``: it always sums to
    ``-log_prob / ln 2`` per image, or a ValueError says the model has no per-pixel decomposition.
    """
    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "log_prob_map"):
            logp = model.log_prob_map(x, cond)  # (B, C, H, W) nats
        else:
            params = model(x, cond)  # (B, P, H, W); checks x and cond
            logp = model.head.log_prob(params.float(), x)  # (B, C, H, W) nats
        total = model.log_prob(x, cond).double()  # (B,)
    finally:
        model.train(was_training)
    mismatch = (logp.double().sum((1, 2, 3)) - total).abs().max().item()
    if mismatch > 1e-3 * max(1.0, total.abs().max().item()):
        raise ValueError(
            f"model {model.model_name!r} does not split its log-likelihood over pixels through its head "
            f"(off by {mismatch:.3g} nats); it needs a log_prob_map(x, cond) method for NLL maps"
        )
    return -logp.sum(1) / math.log(2.0)  # (B, H, W) bits


def describe_order(model) -> str:
    """One line naming the model's generation order (raster, subscale S, or the first steps of another)."""
    c, h, w = model.image_shape
    steps = model.order()
    joint = model.head.joint_channels
    if c == 1:
        inside = ""
    elif joint:
        inside = f"; the {c} channels of a pixel in one step"
    else:
        inside = "; channels R -> G -> B one step each" if c == 3 else f"; channels 0..{c - 1} one step each"
    if steps == raster_order(c, h, w, joint):
        return f"raster: rows top to bottom, pixels left to right{inside}; {len(steps)} steps"
    for s in range(2, min(h, w) + 1):
        if h % s == 0 and w % s == 0 and steps == subscale_order(c, h, w, s, joint):
            return (
                f"subscale S={s}: {s * s} slices x[:, :, a::{s}, b::{s}] of {h // s}x{w // s} in raster order of "
                f"(a, b), raster inside each slice{inside}; {len(steps)} steps"
            )
    first = ", ".join(f"({st.h},{st.w})" for st in steps[:6])
    return f"custom order of {len(steps)} steps, starting {first} ..."


def parameter_table(model) -> list[tuple[str, str, int]]:
    """(module name, module type, parameter count) for every module that owns parameters directly."""
    rows = []
    for name, module in model.named_modules():
        n = sum(p.numel() for p in module.parameters(recurse=False))
        if n:
            rows.append((name or "(model)", type(module).__name__, n))
    return rows


def summarize(model, position: tuple[int, int], channel: int = 0, magnitude: torch.Tensor | None = None) -> str:
    """The text report of ``pixelmodels inspect``: parameters per layer, order, receptive field counts."""
    if magnitude is None:
        magnitude = receptive_field(model, position, channel)
    rows = parameter_table(model)
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"model {model.model_name}: image {tuple(model.image_shape)}, {model.num_levels} levels"]
    lines.append(f"config: {model.config}")
    lines.append("parameters per layer:")
    lines += [f"  {name:{width}s} {kind:20s} {n:>10,d}" for name, kind, n in rows]
    lines.append(f"  {'total':{width}s} {'':20s} {sum(r[2] for r in rows):>10,d}")
    lines.append(f"generation order: {describe_order(model)}")
    field = summarize_field(magnitude, context_mask(model, position, channel), position)
    lines.append(f"receptive field of channel {channel} at {tuple(position)}: {field}")
    if field.seen == 0 and field.context > 0:
        lines.append(
            "  no gradient reaches the inputs: this network is not differentiable in its inputs here (e.g. SPN "
            "with depth upscaling rounds them), so its receptive field cannot be measured by gradients"
        )
    return "\n".join(lines)
