"""Naive vs incremental sampling for Row LSTM and Diagonal BiLSTM (images/s, one run, side by side).

``python -m benchmarks.sampling_pixelrnn [--quick]`` writes ``benchmarks/results/sampling_pixelrnn.json/.png``.

- fast: ``model.sample(method="fast")``, the whole image; median of ``--repeats`` runs.
- naive: ``model.sample(method="naive")`` reruns the full network at every step, so every step costs the same;
  a full naive run at 28x28 takes tens of minutes on a CPU. We time ``--naive-steps`` steps of the naive loop
  (median of ``--repeats``) and multiply the per-step time by the number of steps. ``check`` compares that
  estimate with a full naive run on a small image, and ``same_images`` confirms that both samplers draw the
  same images for one seed there.
Models: the CPU-sized presets (hidden_channels=16, num_layers=2, 7x7 input conv), untrained (speed does not
depend on the weights).
"""

from __future__ import annotations

import argparse
import logging
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import median_time, save_result  # noqa: E402

log = logging.getLogger("benchmarks.sampling_pixelrnn")
MODELS = ["row_lstm", "diagonal_bilstm"]
HPARAMS = dict(hidden_channels=16, num_layers=2)
CASES = {"28x28 gray, K=2": ((1, 28, 28), 2), "16x16 RGB, K=256": ((3, 16, 16), 256)}
QUICK_CASES = {"8x8 gray, K=2": ((1, 8, 8), 2), "4x4 RGB, K=256": ((3, 4, 4), 256)}


def naive_steps(model, n: int, steps: int, generator: torch.Generator) -> None:
    """The first ``steps`` steps of ``sampling.naive_sample`` (same work per step as the full loop)."""
    x = torch.zeros(n, *model.image_shape, dtype=torch.long)
    with torch.no_grad():
        for h, w, channels in model.order()[:steps]:
            params = model.network(model.scale_input(x))[:, :, h, w]  # (B, P)
            x[:, :, h, w] = model.head.sample(params.float(), x[:, :, h, w], channels, None, 1.0, generator)


def measure(name: str, shape, k: int, batch: int, repeats: int, n_naive: int) -> dict:
    model = pixelmodels.build(name, image_shape=shape, num_levels=k, **HPARAMS).eval()
    g = torch.Generator().manual_seed(0)
    steps = len(model.order())
    fast = median_time(lambda: model.sample(batch, generator=g, method="fast"), repeats=repeats)
    per_step = median_time(lambda: naive_steps(model, batch, n_naive, g), repeats=repeats) / n_naive
    naive = per_step * steps
    row = {
        "model": name,
        "shape": list(shape),
        "num_levels": k,
        "batch": batch,
        "steps": steps,
        "fast_s": fast,
        "naive_s_estimated": naive,
        "fast_images_per_s": batch / fast,
        "naive_images_per_s": batch / naive,
        "speedup": naive / fast,
    }
    log.info(
        f"{name:16s} {shape} B={batch:2d}: fast {fast:7.2f} s ({batch / fast:7.3f} img/s), "
        f"naive ~{naive:8.1f} s ({batch / naive:8.5f} img/s), x{naive / fast:.1f}"
    )
    return row


def check(name: str) -> dict:
    """A full naive run on a small image against its per-step estimate, and image equality for one seed."""
    shape, k = (1, 8, 8), 2
    model = pixelmodels.build(name, image_shape=shape, num_levels=k, **HPARAMS).eval()
    start = time.perf_counter()
    naive = model.sample(4, generator=torch.Generator().manual_seed(1), method="naive")
    full = time.perf_counter() - start
    per_step = median_time(lambda: naive_steps(model, 4, 8, torch.Generator().manual_seed(2)), repeats=3) / 8
    fast = model.sample(4, generator=torch.Generator().manual_seed(1), method="fast")
    return {
        "model": name,
        "shape": list(shape),
        "batch": 4,
        "naive_full_s": full,
        "naive_estimated_s": per_step * len(model.order()),
        "same_images": bool(torch.equal(naive, fast)),
    }


def plot(rows: list[dict], cases: dict, threads: int):
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.6), squeeze=False)
    for ax, (label, (shape, _)) in zip(axes[0], cases.items(), strict=True):
        sub = [r for r in rows if r["shape"] == list(shape)]
        names = [f"{r['model']}\nB={r['batch']}" for r in sub]
        xs = range(len(sub))
        ax.bar([x - 0.2 for x in xs], [r["naive_images_per_s"] for r in sub], 0.4, label="naive (estimated)")
        ax.bar([x + 0.2 for x in xs], [r["fast_images_per_s"] for r in sub], 0.4, label="incremental")
        for x, r in zip(xs, sub, strict=True):
            ax.text(x + 0.2, r["fast_images_per_s"], f"x{r['speedup']:.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("images / s")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"PixelRNN sampling, CPU, {threads} torch thread(s) (h=16, 2 layers)", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny images, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (median; default 3, 1 quick)")
    parser.add_argument("--naive-steps", type=int, default=8, help="naive steps timed per repeat")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    cases = QUICK_CASES if args.quick else CASES
    repeats = args.repeats or (1 if args.quick else 3)
    rows = [
        measure(name, shape, k, batch, repeats, args.naive_steps)
        for (shape, k) in cases.values()
        for name in MODELS
        for batch in (1, 16)
    ]
    checks = [check(name) for name in MODELS]
    for c in checks:
        log.info(f"check {c}")
    data = {
        "hparams": HPARAMS,
        "repeats": repeats,
        "naive_steps_timed": args.naive_steps,
        "threads": args.threads,
        "rows": rows,
        "check": checks,
    }
    save_result("sampling_pixelrnn", data, plot(rows, cases, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
