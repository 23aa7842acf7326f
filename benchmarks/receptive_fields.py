"""Receptive fields from gradients: which input pixels the output parameters at one position depend on.

``python -m benchmarks.receptive_fields [--quick]`` writes ``docs/img/rf_<model>.png`` (one picture per model)
and ``benchmarks/results/receptive_fields.json/.png`` (counts and all panels side by side); ``--quick`` uses
8x8 images and writes only the results, not the docs pictures.

PixelCNN shows its blind spot (up-right pixels its stacked masked 3x3 convolutions never reach), Row LSTM its
triangle, Diagonal BiLSTM the full causal context; the paper's Diagonal BiLSTM layer (``full_context=False``)
misses exactly one pixel, the last of the previous row (see models/pixelrnn.py, "Deviations").
Untrained models: a dependency exists iff the gradient is non-zero, which does not need training.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import save_result  # noqa: E402

log = logging.getLogger("benchmarks.receptive_fields")
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
# (file stem, title, model name, hyper-parameters); 3x3 input convs everywhere so the shapes are plain to see.
MODELS = [
    ("pixelcnn", "PixelCNN: blind spot", "pixelcnn", dict(hidden_channels=8, num_layers=4, first_kernel_size=3)),
    ("row_lstm", "Row LSTM: triangle", "row_lstm", dict(hidden_channels=8, num_layers=4, first_kernel_size=3)),
    (
        "diagonal_bilstm",
        "Diagonal BiLSTM: full context",
        "diagonal_bilstm",
        dict(hidden_channels=8, num_layers=4, first_kernel_size=3),
    ),
    (
        "diagonal_bilstm_paper",
        "Diagonal BiLSTM, paper's layer",
        "diagonal_bilstm",
        dict(hidden_channels=8, num_layers=4, first_kernel_size=3, full_context=False),
    ),
]
CMAP = ListedColormap(["white", "#d62728", "#1f3b73", "#ffbf00"])  # later, missed, seen, the position


def receptive_field(model, h: int, w: int, batch: int = 4) -> torch.Tensor:
    """(H, W) bool: input pixels (any channel) that the parameters at (h, w) depend on."""
    x = (torch.rand(batch, *model.image_shape) * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.network(x)[:, :, h, w].abs().sum(), x)
    return grad.abs().sum(dim=(0, 1)) > 0


def category_map(seen: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """0 later pixel, 1 earlier pixel not seen, 2 seen, 3 the position itself."""
    height, width = seen.shape
    earlier = (torch.arange(height * width) < h * width + w).view(height, width)
    cat = torch.where(earlier, torch.where(seen, 2, 1), 0)
    cat[h, w] = 3
    return cat


def draw(ax, cat: torch.Tensor, title: str) -> None:
    ax.imshow(cat.numpy(), cmap=CMAP, vmin=0, vmax=3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images instead of 16x16")
    parser.add_argument("--size", type=int, default=None, help="image side (default 16, 8 with --quick)")
    args = parser.parse_args(argv)
    size = args.size or (8 if args.quick else 16)
    h, w = size // 2, size // 2
    torch.manual_seed(0)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results, cats = {}, []
    for stem, title, name, hparams in MODELS:
        model = pixelmodels.build(name, image_shape=(1, size, size), num_levels=2, **hparams)
        seen = receptive_field(model, h, w)
        cat = category_map(seen, h, w)
        cats.append((cat, title))
        results[stem] = {
            "model": name,
            "hparams": hparams,
            "earlier_pixels": int((cat == 1).sum() + (cat == 2).sum()),
            "seen": int((cat == 2).sum()),
            "missed": int((cat == 1).sum()),
            "seen_later": int((seen & (cat == 0)).sum()),  # must be 0 (causality)
        }
        if not args.quick:  # the docs show the full-size pictures; --quick leaves them alone
            fig, ax = plt.subplots(figsize=(3, 3))
            draw(ax, cat, f"{title}\n{size}x{size}, output at ({h}, {w})")
            fig.savefig(DOCS_IMG / f"rf_{stem}.png", dpi=100, bbox_inches="tight")
            plt.close(fig)
        log.info(f"{stem:24s} seen {results[stem]['seen']:4d} / {results[stem]['earlier_pixels']} earlier pixels")
    fig, axes = plt.subplots(1, len(cats), figsize=(3 * len(cats), 3.2))
    for ax, (cat, title) in zip(axes, cats, strict=True):
        draw(ax, cat, title)
    fig.suptitle(
        f"Receptive field of the output at ({h}, {w}): blue seen, red earlier but not seen, yellow the pixel",
        fontsize=9,
    )
    save_result("receptive_fields", {"image_size": size, "position": [h, w], "models": results}, fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
