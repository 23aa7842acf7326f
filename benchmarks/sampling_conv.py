"""Naive vs cached (fast) sampling of the convolutional models: images per second and the speed-up, side by side.

    python -m benchmarks.sampling_conv            # 28x28 gray (K=2) and 32x32x3 (K=256), batch 1 and 16
    python -m benchmarks.sampling_conv --quick    # tiny smoke run

The fast sampler is timed on complete samples. The naive sampler reruns the whole network at every step, so
each of its steps costs the same wherever it is in the image; it is timed on the first ``--naive-steps`` steps
of the order and extrapolated linearly to the full image (stated in the JSON as ``naive_timed_steps``), except
where the image has no more steps than that. ``--check-extrapolation`` also times one complete naive sample
(28x28, batch 1) to show the extrapolation error. Medians over ``--repeats`` runs, all in one process.
"""

from __future__ import annotations

import argparse
import logging

import torch

import pixelmodels
from benchmarks.common import median_time, save_result

# small but realistic widths (the papers use 128-384 features and 12-20 layers)
MODELS = {
    "pixelcnn": dict(hidden_channels=32, num_layers=5, kernel_size=3, first_kernel_size=7),
    "gated_pixelcnn": dict(hidden_channels=32, num_layers=5, kernel_size=5),
}
SPACES = {"28x28 gray, K=2": ((1, 28, 28), 2), "32x32x3, K=256": ((3, 32, 32), 256)}
QUICK_MODELS = {
    "pixelcnn": dict(hidden_channels=8, num_layers=2),
    "gated_pixelcnn": dict(hidden_channels=8, num_layers=2, kernel_size=3),
}
QUICK_SPACES = {"8x8 gray, K=2": ((1, 8, 8), 2), "6x6x3, K=16": ((3, 6, 6), 16)}


def time_sampler(model, batch: int, method: str, steps: int | None, repeats: int) -> tuple[float, int]:
    """Median seconds to run ``steps`` steps (None: all) of ``method``; returns (seconds, steps timed)."""
    full = model.order()
    model._order = full if steps is None or steps >= len(full) else full[:steps]
    timed = len(model._order)
    gen = torch.Generator().manual_seed(0)
    try:
        seconds = median_time(lambda: model.sample(batch, method=method, generator=gen), repeats=repeats)
    finally:
        model._order = full
    return seconds, timed


def run(models: dict, spaces: dict, batches: list[int], repeats: int, naive_steps: int, check: bool) -> dict:
    rows = []
    for space, (shape, k) in spaces.items():
        for name, hparams in models.items():
            model = pixelmodels.build(name, image_shape=shape, num_levels=k, **hparams).eval()
            total = len(model.order())
            for batch in batches:
                fast_s, _ = time_sampler(model, batch, "fast", None, repeats)
                naive_part, timed = time_sampler(model, batch, "naive", naive_steps, repeats)
                naive_s = naive_part * total / timed
                row = {
                    "model": name,
                    "space": space,
                    "batch": batch,
                    "steps": total,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "fast_seconds": fast_s,
                    "naive_seconds": naive_s,
                    "naive_timed_steps": timed,
                    "fast_images_per_s": batch / fast_s,
                    "naive_images_per_s": batch / naive_s,
                    "speedup": naive_s / fast_s,
                }
                rows.append(row)
                logging.info(
                    "%-15s %-16s batch %2d: fast %.2f img/s, naive %.3f img/s (%s), speed-up %.1fx",
                    name,
                    space,
                    batch,
                    row["fast_images_per_s"],
                    row["naive_images_per_s"],
                    "complete" if timed == total else f"{timed}/{total} steps, extrapolated",
                    row["speedup"],
                )
    result = {"hparams": models, "repeats": repeats, "rows": rows}
    if check:
        shape, k = next(iter(spaces.values()))
        model = pixelmodels.build("pixelcnn", image_shape=shape, num_levels=k, **models["pixelcnn"]).eval()
        complete, _ = time_sampler(model, 1, "naive", None, 1)
        part, timed = time_sampler(model, 1, "naive", naive_steps, repeats)
        estimate = part * len(model.order()) / timed
        result["extrapolation_check"] = {"complete_seconds": complete, "extrapolated_seconds": estimate}
        logging.info("extrapolation check: complete naive %.2f s, extrapolated %.2f s", complete, estimate)
    return result


def plot(result: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"{r['model']}\n{r['space']}\nbatch {r['batch']}" for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    xs = range(len(rows))
    ax1.bar([x - 0.2 for x in xs], [r["naive_images_per_s"] for r in rows], 0.4, label="naive")
    ax1.bar([x + 0.2 for x in xs], [r["fast_images_per_s"] for r in rows], 0.4, label="fast (cached)")
    ax1.set_yscale("log")
    ax1.set_ylabel("images / s")
    ax1.legend()
    ax2.bar(xs, [r["speedup"] for r in rows], color="tab:green")
    ax2.axhline(20, color="gray", linestyle="--", label="20x target")
    ax2.set_ylabel("speed-up (naive time / fast time)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
    fig.suptitle(f"Sampling speed, {result['meta_device']}, {result['threads']} thread(s)")
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and images (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-steps", type=int, default=96, help="naive steps timed before extrapolating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--check-extrapolation", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    models, spaces = (QUICK_MODELS, QUICK_SPACES) if args.quick else (MODELS, SPACES)
    result = run(models, spaces, args.batches, args.repeats, args.naive_steps, args.check_extrapolation)
    result["threads"] = args.threads
    result["naive_method"] = "first naive_timed_steps steps timed, scaled by steps / naive_timed_steps"
    result["meta_device"] = "CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    path = save_result("sampling_conv_quick" if args.quick else "sampling_conv", result, plot(result))
    logging.info("wrote %s", path)


if __name__ == "__main__":
    main()
