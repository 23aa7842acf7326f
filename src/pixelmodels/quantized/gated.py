"""Integer Gated PixelCNN (the float model: ``pixelmodels.models.gated_pixelcnn``, van den Oord et al. 2016,
"Conditional Image Generation with PixelCNN Decoders", section 2 and Figure 2).

Per layer, in integers:
- vertical stack: ``acc_v = conv_v(v) + label_v`` (exact); rescaled twice, to the gate tables' fixed point
  (``pre_frac`` bits) and to an activation (scale calibrated) that feeds the 1x1 link;
- horizontal stack: ``pre = rescale(conv_h(h)) + rescale(link(v_act)) + label_h`` in the table fixed point;
- gates: ``tanh(f) * sigmoid(g)`` by tables, ``gate_out`` fractional bits (a bounded activation needs no
  calibration);
- residual ``h + h_out(gated)`` and the skip sum, each at its own calibrated scale.

The image enters as ``u = 2x - (K - 1)`` (the float model's [-1, 1] input times K - 1, so zero padding matches).
Class labels are an embedding table quantized at the scales they are added at. Spatial maps are not supported.

``IntGatedStepper`` runs the stack incrementally (the vertical stack once per row, the horizontal stack at the
current pixel only, from per-layer input caches ``pixelmodels.nn.cache.ConvCache``, as the float fast sampler);
the integers are exact, so every step equals the teacher-forced pass bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelmodels.nn.cache import ConvCache
from pixelmodels.nn.gated import shift_down
from pixelmodels.quantized import layers
from pixelmodels.quantized.output import IntOutput, Peaks, build_output, masked_weight, output_hooks
from pixelmodels.quantized.tables import Formats, Tables


# ----- quantization time ----------------------------------------------------------------------------------------
def calibrate(model, batches) -> Peaks:
    stack, peaks = model.stack, Peaks()
    named = {f"layers.{i}.v_act": (layer.link, "in") for i, layer in enumerate(stack.layers)}
    named |= {f"layers.{i}.h": (layer, "out1") for i, layer in enumerate(stack.layers)}
    named |= output_hooks(model.output)
    skips: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, out: skips.append(out[2])) for layer in stack.layers]
    try:
        with peaks.hooks(named), torch.no_grad():
            for x, cond in batches:
                skips.clear()
                model(x, cond)
                total = 0.0
                for s in skips:
                    total = total + s
                    peaks.record("skip", total)
    finally:
        for h in hooks:
            h.remove()
    return peaks


def build(model, peaks: Peaks, cfg: dict) -> dict[str, torch.Tensor]:
    if model.cond_channels:
        raise ValueError("integer gated_pixelcnn models take class labels only, not a spatial map (cond_channels)")
    fmt, bits, act_bits = Formats(**cfg["formats"]), cfg["weight_bits"], cfg["act_bits"]
    k = model.num_levels
    store: dict[str, torch.Tensor] = {}
    tab_scale, tab_bound = 2.0**-fmt.pre_frac, fmt.gate_range << fmt.pre_frac
    gate_scale, gate_bound = 2.0**-fmt.gate_out, 1 << fmt.gate_out
    classes = model.num_classes
    conds = None
    if classes:
        labels = torch.arange(classes + 1, device=next(model.parameters()).device)
        conds = model.stack.conditioning(classes + 1, labels, None)  # per layer (v, h): (classes+1, 2p, 1, 1)
    v_in = h_in = (1.0 / (k - 1), k - 1)
    skip_scale, skip_bound = layers.act_scale(peaks.peak["skip"], act_bits)
    for i, layer in enumerate(model.stack.layers):
        p = f"layers.{i}"
        acc_scale, acc_bound = layers.build_conv(
            store, f"{p}.v_conv", layer.v_conv.weight, layer.v_conv.bias, *v_in, bits
        )
        if conds is not None:
            emb_v = torch.round(conds[i][0][:, :, 0, 0].double().cpu() / torch.from_numpy(acc_scale)).long()
            store[f"{p}.label_v"] = emb_v  # (classes+1, 2p), at the accumulator scale
            acc_bound += float(emb_v.abs().max())
            store[f"{p}.label_h"] = torch.round(conds[i][1][:, :, 0, 0].double().cpu() / tab_scale).long()
        layers.build_rescale(store, f"{p}.v_tab", acc_scale, acc_bound, tab_scale, tab_bound)
        v_act_scale, v_act_bound = layers.act_scale(peaks.peak[f"{p}.v_act"], act_bits)
        layers.build_rescale(store, f"{p}.v_act", acc_scale, acc_bound, v_act_scale, v_act_bound)
        acc_scale, acc_bound = layers.build_conv(
            store, f"{p}.h_conv", masked_weight(layer.h_conv), layer.h_conv.bias, *h_in, bits
        )
        layers.build_rescale(store, f"{p}.h_tab", acc_scale, acc_bound, tab_scale, 4 * tab_bound)
        acc_scale, acc_bound = layers.build_conv(
            store, f"{p}.link", layer.link.weight, layer.link.bias, v_act_scale, v_act_bound, bits
        )
        layers.build_rescale(store, f"{p}.link_tab", acc_scale, acc_bound, tab_scale, 4 * tab_bound)
        h_scale, h_bound = layers.act_scale(peaks.peak[f"{p}.h"], act_bits)
        acc_scale, acc_bound = layers.build_conv(
            store, f"{p}.h_out", masked_weight(layer.h_out), layer.h_out.bias, gate_scale, gate_bound, bits
        )
        layers.build_rescale(store, f"{p}.h_out.out", acc_scale, acc_bound, h_scale, 2 * h_bound)
        if not layer.first:
            layers.build_rescale(store, f"{p}.residual", h_in[0], h_in[1], h_scale, 2 * h_bound)
        store[f"{p}.h_bound"] = torch.tensor(h_bound)
        acc_scale, acc_bound = layers.build_conv(
            store, f"{p}.skip", masked_weight(layer.skip), layer.skip.bias, gate_scale, gate_bound, bits
        )
        layers.build_rescale(store, f"{p}.skip.out", acc_scale, acc_bound, skip_scale, skip_bound)
        v_in, h_in = (gate_scale, gate_bound), (h_scale, h_bound)
    store["skip_bound"] = torch.tensor(skip_bound)
    build_output(store, model.output, skip_scale, skip_bound, peaks, cfg)
    return store


# ----- decode time ----------------------------------------------------------------------------------------------
class IntGatedLayer:
    def __init__(self, store, p: str, first: bool, half: int):
        self.first, self.half = first, half
        self.v_conv, self.h_conv = layers.QConv(store, f"{p}.v_conv"), layers.QConv(store, f"{p}.h_conv")
        self.link, self.h_out, self.skip = (layers.QConv(store, f"{p}.{n}") for n in ("link", "h_out", "skip"))
        self.v_tab, self.v_act, self.h_tab, self.link_tab, self.h_out_r, self.skip_r = (
            layers.Rescale(store, f"{p}.{n}") for n in ("v_tab", "v_act", "h_tab", "link_tab", "h_out.out", "skip.out")
        )
        self.residual = None if first else layers.Rescale(store, f"{p}.residual")
        self.h_bound = int(store[f"{p}.h_bound"])
        self.label_v, self.label_h = store.get(f"{p}.label_v"), store.get(f"{p}.label_h")

    def modules(self):
        return [
            self.v_conv,
            self.h_conv,
            self.link,
            self.h_out,
            self.skip,
            self.v_tab,
            self.v_act,
            self.h_tab,
            self.link_tab,
            self.h_out_r,
            self.skip_r,
        ] + ([self.residual] if self.residual else [])

    def to(self, device):
        for m in self.modules():
            m.to(device)
        if self.label_v is not None:
            self.label_v, self.label_h = self.label_v.long().to(device), self.label_h.long().to(device)
        return self

    def labels(self, labels: torch.Tensor | None, dims: int):
        """Per-image label terms (B, 2p, 1...) for the vertical accumulator and the horizontal table input."""
        if self.label_v is None:
            return 0, 0
        shape = (labels.shape[0], -1) + (1,) * (dims - 2)
        return self.label_v[labels].view(shape), self.label_h[labels].view(shape)

    def h_next(self, h: torch.Tensor, acc_out: torch.Tensor, dim: int = 1) -> torch.Tensor:
        out = self.h_out_r(acc_out, dim)
        if self.residual is not None:
            out = out + self.residual(h, dim)
        return out.clamp(-self.h_bound, self.h_bound)


class IntGatedNet:
    """The integer network: ``forward(x, labels)`` -> parameters (B, P, H, W); ``stepper`` for decoding."""

    def __init__(self, cfg: dict, store: dict[str, torch.Tensor], tables: Tables):
        m = cfg["model"]
        self.k, self.tables, self.num_classes = cfg["num_levels"], tables, m.get("num_classes")
        half = m["kernel_size"] // 2
        self.layers = [IntGatedLayer(store, f"layers.{i}", i == 0, half) for i in range(m["num_layers"])]
        self.skip_bound = int(store["skip_bound"])
        self.output = IntOutput(store)

    def to(self, device) -> IntGatedNet:
        for layer in self.layers:
            layer.to(device)
        self.output.to(device)
        return self

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        u = 2 * x - (self.k - 1)  # (B, C, H, W)
        v, h, skip = shift_down(u), u, 0
        for layer in self.layers:
            lab_v, lab_h = layer.labels(labels, 4)
            acc_v = layer.v_conv(F.pad(v, (layer.half, layer.half, layer.half, 0))) + lab_v  # (B, 2p, H, W)
            pre = layer.h_tab(layer.h_conv(F.pad(h, (layer.half, 0, 0, 0))))
            pre = pre + layer.link_tab(layer.link(layer.v_act(acc_v))) + lab_h
            gated = self.tables.gate(pre)  # (B, p, H, W)
            h = layer.h_next(h, layer.h_out(gated))
            skip = skip + layer.skip_r(layer.skip(gated))
            v = self.tables.gate(layer.v_tab(acc_v))
        return self.output(skip.clamp(-self.skip_bound, self.skip_bound))  # (B, P, H, W)

    def stepper(self, n: int, height: int, width: int, labels: torch.Tensor | None) -> IntGatedStepper:
        return IntGatedStepper(self, n, height, width, labels)


def _cache(conv: layers.QConv, n: int, height: int, width: int, left: int) -> ConvCache:
    return ConvCache(conv.weight, conv.bias, n, height, width, left=left)


class IntGatedStepper:
    """``start_row(x, i)`` once per row; ``params(x, i, j)`` -> (n, P) at pixel (i, j) from the canvas ``x``
    (n, C, H, W) (later channels of the pixel are masked, whatever their value); ``commit(x, i, j)`` after the
    pixel's last channel is known."""

    def __init__(self, net: IntGatedNet, n: int, height: int, width: int, labels: torch.Tensor | None):
        self.net, self.labels, self.width = net, labels, width
        self.v_caches = [_cache(layer.v_conv, n, height, width, layer.half) for layer in net.layers]
        self.h_caches = [_cache(layer.h_conv, n, height, width, layer.half) for layer in net.layers]
        self.h_rows: list[torch.Tensor] = []  # per layer (n, W, 2p): link + label terms of the current row

    def start_row(self, x: torch.Tensor, i: int) -> None:
        net = self.net
        v = 2 * x[:, :, i - 1] - (net.k - 1) if i > 0 else x.new_zeros(x.shape[0], x.shape[1], self.width)
        self.h_rows = []
        for layer, cache in zip(net.layers, self.v_caches, strict=True):
            lab_v, lab_h = layer.labels(self.labels, 3)
            cache.write_row(i, v)
            acc_v = cache.output_row(i).long() + lab_v  # (n, 2p, W)
            row = layer.link_tab(layer.link(layer.v_act(acc_v).unsqueeze(-1))[..., 0]) + lab_h  # (n, 2p, W)
            self.h_rows.append(row.transpose(1, 2).contiguous())
            v = net.tables.gate(layer.v_tab(acc_v))

    def params(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        net = self.net
        h, skip = 2 * x[:, :, i, j] - (net.k - 1), 0  # (n, C)
        for layer, cache, row in zip(net.layers, self.h_caches, self.h_rows, strict=True):
            gated = net.tables.gate(layer.h_tab(cache.step(i, j, h).long()) + row[:, j])  # (n, p)
            h = layer.h_next(h, _linear(layer.h_out, gated))
            skip = skip + layer.skip_r(_linear(layer.skip, gated))
        return net.output(skip.clamp(-net.skip_bound, net.skip_bound))  # (n, P)

    def commit(self, x: torch.Tensor, i: int, j: int) -> None:
        self.h_caches[0].write(i, j, 2 * x[:, :, i, j] - (self.net.k - 1))


def _linear(conv: layers.QConv, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.double(), conv.matrix(), conv.bias).long()
