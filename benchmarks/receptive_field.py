"""Receptive fields of PixelCNN and Gated PixelCNN side by side (Gated PixelCNN paper, Figure 1).

    python -m benchmarks.receptive_field [--quick]

For each model (same depth, 3x3-reach layers) the map marks the input pixels whose gradient reaches the output
parameters at the centre pixel: PixelCNN's blind spot up-right of the pixel shows, Gated PixelCNN's field is the
full rectangle above plus the pixels to the left.
"""

from __future__ import annotations

import argparse

import torch

import pixelmodels
from benchmarks.common import save_result


def field(model, i: int, j: int) -> torch.Tensor:
    x = (torch.rand(4, *model.image_shape) * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.network(x)[:, :, i, j].sum(), x)
    return (grad.abs().sum(dim=(0, 1)) > 0).int()  # (H, W)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller image and depth")
    args = parser.parse_args(argv)
    size, layers = (9, 3) if args.quick else (15, 5)
    i = j = size // 2
    torch.manual_seed(0)
    models = {
        "pixelcnn": pixelmodels.build(
            "pixelcnn",
            image_shape=(1, size, size),
            num_levels=2,
            hidden_channels=8,
            num_layers=layers - 1,
            first_kernel_size=3,
        ),
        "gated_pixelcnn": pixelmodels.build(
            "gated_pixelcnn",
            image_shape=(1, size, size),
            num_levels=2,
            hidden_channels=8,
            num_layers=layers,
            kernel_size=3,
        ),
    }
    maps = {name: field(model, i, j) for name, model in models.items()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, (name, seen) in zip(axes, maps.items(), strict=True):
        img = seen.float().clone()
        img[i, j] = 0.5
        ax.imshow(img, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{name}: {int(seen.sum())} pixels seen")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Receptive field of pixel ({i}, {j}) after {layers} layers of 3x3 reach (centre: grey)")
    data = {"pixel": [i, j], "layers": layers, "maps": {k: v.tolist() for k, v in maps.items()}}
    save_result("receptive_field_quick" if args.quick else "receptive_field", data, fig)


if __name__ == "__main__":
    main()
