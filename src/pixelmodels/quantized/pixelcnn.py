"""Integer PixelCNN (the float model: ``pixelmodels.models.pixelcnn``, van den Oord et al. 2016, "Pixel
Recurrent Neural Networks", section 3.5 and Figure 5).

Mask-A input convolution, residual blocks (ReLU, 1x1, ReLU, kxk mask B, ReLU, 1x1, added to the block input)
and the output network, all in integers: ReLU is exact on integers, so no table is needed; every activation has
a calibrated scale and clamp, residual sums are rescaled to the block output's scale.

Decoding evaluates the network on the window of rows ``i-r .. i`` and columns ``j-r .. j+r`` around each step
(``r = model.receptive_radius``), clipped to the image: the parameters at (i, j) read nothing outside it, and in
integers the window gives exactly the teacher-forced numbers.
"""

from __future__ import annotations

import torch

from pixelmodels.quantized import layers
from pixelmodels.quantized.output import IntOutput, Peaks, build_output, masked_weight, output_hooks
from pixelmodels.quantized.tables import Tables


# ----- quantization time ----------------------------------------------------------------------------------------
def calibrate(model, batches) -> Peaks:
    peaks = Peaks()
    named = {"input": (model.input_conv, "out")} | output_hooks(model.output)
    for b, block in enumerate(model.blocks):
        named |= {f"blocks.{b}.0": (block.body[1], "out"), f"blocks.{b}.1": (block.body[3], "out")}
        named[f"blocks.{b}"] = (block, "out")
    with peaks.hooks(named), torch.no_grad():
        for x, cond in batches:
            model(x, cond)
    return peaks


def build(model, peaks: Peaks, cfg: dict) -> dict[str, torch.Tensor]:
    bits, act_bits, k = cfg["weight_bits"], cfg["act_bits"], model.num_levels
    store: dict[str, torch.Tensor] = {}

    def conv(name: str, module, x_in: tuple[float, int], peak_name: str, bound_factor: int = 1):
        acc_scale, acc_bound = layers.build_conv(store, name, masked_weight(module), module.bias, *x_in, bits)
        scale, bound = layers.act_scale(peaks.peak[peak_name], act_bits)
        layers.build_rescale(store, f"{name}.out", acc_scale, acc_bound, scale, bound_factor * bound)
        return scale, bound

    x = conv("input", model.input_conv, (1.0 / (k - 1), k - 1), "input")
    for b, block in enumerate(model.blocks):
        y = conv(f"blocks.{b}.0", block.body[1], x, f"blocks.{b}.0")
        y = conv(f"blocks.{b}.1", block.body[3], y, f"blocks.{b}.1")
        out = conv(f"blocks.{b}.2", block.body[5], y, f"blocks.{b}", bound_factor=2)
        layers.build_rescale(store, f"blocks.{b}.residual", x[0], x[1], out[0], 2 * out[1])
        store[f"blocks.{b}.bound"] = torch.tensor(out[1])
        x = out
    build_output(store, model.output, *x, peaks, cfg)
    return store


# ----- decode time ----------------------------------------------------------------------------------------------
class IntPixelCNN:
    def __init__(self, cfg: dict, store: dict[str, torch.Tensor], tables: Tables):
        m = cfg["model"]
        self.k = cfg["num_levels"]
        self.radius = m["first_kernel_size"] // 2 + m["num_layers"] * (m["kernel_size"] // 2)
        pad_in, pad = m["first_kernel_size"] // 2, m["kernel_size"] // 2
        self.input = (layers.QConv(store, "input", pad_in), layers.Rescale(store, "input.out"))
        self.blocks = []
        for b in range(m["num_layers"]):
            convs = [layers.QConv(store, f"blocks.{b}.{n}", pad if n == 1 else 0) for n in range(3)]
            rescales = [layers.Rescale(store, f"blocks.{b}.{n}.out") for n in range(3)]
            self.blocks.append(
                (convs, rescales, layers.Rescale(store, f"blocks.{b}.residual"), int(store[f"blocks.{b}.bound"]))
            )
        self.output = IntOutput(store)

    def to(self, device) -> IntPixelCNN:
        mods = list(self.input) + [m for convs, rs, res, _ in self.blocks for m in (*convs, *rs, res)]
        for m in mods:
            m.to(device)
        self.output.to(device)
        return self

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        conv, rescale = self.input
        h = rescale(conv(2 * x - (self.k - 1)))  # (B, 2h, H, W)
        for convs, rescales, residual, bound in self.blocks:
            y = h
            for c, r in zip(convs, rescales, strict=True):
                y = r(c(y.clamp(min=0)))  # ReLU then conv
            h = (residual(h) + y).clamp(-bound, bound)
        return self.output(h)  # (B, P, H, W)

    def stepper(self, n: int, height: int, width: int, labels=None) -> WindowStepper:
        return WindowStepper(self, width)


class WindowStepper:
    """Per step, the network on the window of the receptive field (clipped to the image)."""

    def __init__(self, net: IntPixelCNN, width: int):
        self.net, self.width = net, width

    def start_row(self, x: torch.Tensor, i: int) -> None:
        pass

    def params(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        r = self.net.radius
        top, left = max(0, i - r), max(0, j - r)
        window = x[:, :, top : i + 1, left : min(self.width, j + r + 1)]
        return self.net.forward(window)[:, :, i - top, j - left]  # (n, P)

    def commit(self, x: torch.Tensor, i: int, j: int) -> None:
        pass
