"""Sampling the convolutional models: naive, cached (fast) and fixed-point, side by side in one process.

    python -m benchmarks.sampling_conv                       # 3x32x32, K=256, batch 1, 16, 64 (~15 min, 1 thread)
    python -m benchmarks.sampling_conv --trained runs/photo  # also a trained checkpoint (fixed-point iterations)
    python -m benchmarks.sampling_conv --quick               # tiny smoke run

Every time is also given in full forward passes of the same model at the same batch (``model(x)`` on a whole
batch of images, median of 3), the unit in which a cached sampler's ideal is about 1. The naive sampler reruns
the network at every step, so each of its steps costs the same wherever it is: it is timed on the first
``--naive-steps`` steps and extrapolated linearly to the whole image (``naive_timed_steps`` in the JSON). The
cached and fixed-point samplers are timed on complete samples (one run each; the fixed-point sampler until its
iterate stops changing, capped at ``--max-iterations`` forward passes for the trained model). Peak memory is the
growth of resident memory (Linux VmHWM, reset through /proc/self/clear_refs) during each run.

Untrained models are nearly independent of their context, so the fixed-point iteration converges in a few
passes on them; the trained checkpoint shows what it costs when the pixels depend on each other.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import statistics
import time
from pathlib import Path

import torch

import pixelmodels
from benchmarks.common import save_result
from pixelmodels.sampling import fixed_point_sample

# small but realistic widths (the papers use 128-384 features and 12-20 layers)
MODELS = {
    "pixelcnn": dict(hidden_channels=32, num_layers=5, kernel_size=3, first_kernel_size=7),
    "gated_pixelcnn": dict(hidden_channels=32, num_layers=5, kernel_size=5),
    "pixelcnn_pp": dict(hidden_channels=32, num_layers=2, num_resolutions=3, num_mixtures=5, dropout=0.0),
}
SHAPE, LEVELS = (3, 32, 32), 256
QUICK_MODELS = {
    "pixelcnn": dict(hidden_channels=8, num_layers=2),
    "gated_pixelcnn": dict(hidden_channels=8, num_layers=2, kernel_size=3),
    "pixelcnn_pp": dict(hidden_channels=8, num_layers=1, num_mixtures=2, dropout=0.0),
}
QUICK_SHAPE = (3, 8, 8)


def _rss(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def timed(fn) -> tuple[float, int]:
    """(seconds, peak resident memory growth in bytes) of one call."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    start_rss = _rss("VmRSS")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, max(_rss("VmHWM") - start_rss, 0)


def forward_seconds(model, batch: int) -> float:
    x = torch.randint(model.num_levels, (batch, *model.image_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_prefix(model, batch: int, steps: int) -> tuple[float, int, int]:
    """(extrapolated seconds, peak memory, steps timed) of the naive sampler."""
    full = model.order()
    model._order = full[: min(steps, len(full))]
    try:
        seconds, peak = timed(lambda: model.sample(batch, method="naive", generator=torch.Generator().manual_seed(0)))
        timed_steps = len(model._order)
    finally:
        model._order = full
    return seconds * len(full) / timed_steps, peak, timed_steps


def measure(model, name: str, batch: int, naive_steps: int, max_iterations: int | None) -> dict:
    fwd = forward_seconds(model, batch)
    naive_s, naive_peak, timed_steps = naive_prefix(model, batch, naive_steps)
    row = {"model": name, "batch": batch, "steps": len(model.order()), "forward_seconds": fwd}
    row |= {"naive_seconds": naive_s, "naive_timed_steps": timed_steps, "naive_peak_bytes": naive_peak}
    fast = "-"
    if model.supports_fast_sampling:
        seconds, peak = timed(lambda: model.sample(batch, method="fast", generator=torch.Generator().manual_seed(0)))
        row |= {"fast_seconds": seconds, "fast_peak_bytes": peak, "fast_forward_passes": seconds / fwd}
        row["fast_speedup"] = naive_s / seconds
        fast = f"{seconds:.2f} s = {seconds / fwd:.1f} fwd, {naive_s / seconds:.0f}x"
    stats: dict = {}

    def fixed_point():
        gen = torch.Generator().manual_seed(0)
        return fixed_point_sample(model, batch, generator=gen, max_iterations=max_iterations, stats=stats)

    seconds, peak = timed(fixed_point)
    row |= {"fixed_point_seconds": seconds, "fixed_point_peak_bytes": peak, "fixed_point_forward_passes": seconds / fwd}
    row |= {"fixed_point_speedup": naive_s / seconds, "fixed_point_iterations": stats["iterations"]}
    row["fixed_point_converged"] = stats["converged"]
    logging.info(
        "%-15s batch %2d: forward %.3f s | naive %.1f s (%d steps timed) | fast %s | fixed point %.1f s = %.1f fwd"
        " (%d it%s)",
        name, batch, fwd, naive_s, timed_steps, fast, seconds, seconds / fwd, stats["iterations"],
        "" if stats["converged"] else ", capped",
    )  # fmt: skip
    return row


def plot(result: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"{r['model']}{' (trained)' if r.get('trained') else ''}\nbatch {r['batch']}" for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5))
    xs = list(range(len(rows)))
    for offset, key, label in [
        (-0.27, "naive", "naive"),
        (0.0, "fast", "cached"),
        (0.27, "fixed_point", "fixed point"),
    ]:
        ax1.bar(
            [x + offset for x in xs],
            [r.get(f"{key}_seconds", 0) / r["forward_seconds"] for r in rows],
            0.27,
            label=label,
        )
    ax1.axhline(10, color="gray", linestyle="--", label="10 forward passes")
    ax1.set(yscale="log", ylabel="sample time / one forward pass (same batch)")
    ax1.legend(fontsize=8)
    ax2.bar([x - 0.2 for x in xs], [r.get("fast_speedup", 0) for r in rows], 0.4, label="cached")
    ax2.bar([x + 0.2 for x in xs], [r["fixed_point_speedup"] for r in rows], 0.4, label="fixed point")
    ax2.set(yscale="log", ylabel="speed-up over naive")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(xs, labels, fontsize=7, rotation=60, ha="right")
    fig.suptitle(f"Sampling 3x32x32, K=256: {result['meta_device']}, {result['threads']} thread(s)")
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and images (smoke test)")
    parser.add_argument("--naive-steps", type=int, default=12, help="naive steps timed before extrapolating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--trained", help="a run directory or checkpoint of a trained model, also measured")
    parser.add_argument("--trained-batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-iterations", type=int, default=200, help="fixed-point cap for the trained model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    models, shape = (QUICK_MODELS, QUICK_SHAPE) if args.quick else (MODELS, SHAPE)
    load = os.getloadavg()
    rows = []
    for name, hparams in models.items():
        torch.manual_seed(0)
        model = pixelmodels.build(name, image_shape=shape, num_levels=LEVELS, **hparams).eval()
        for batch in args.batches:
            rows.append(measure(model, name, batch, args.naive_steps, None) | {"hparams": hparams})
    if args.trained:
        model = pixelmodels.load_checkpoint(args.trained).eval()
        for batch in args.trained_batches:
            row = measure(model, model.model_name, batch, args.naive_steps, args.max_iterations)
            rows.append(row | {"trained": str(args.trained), "hparams": model.config})
    result = {"shape": shape, "levels": LEVELS, "threads": args.threads, "rows": rows}
    result["load_average_start"], result["load_average_end"] = load, os.getloadavg()
    result["naive_method"] = "first naive_timed_steps steps timed, scaled by steps / naive_timed_steps"
    result["meta_device"] = "CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    path = save_result("sampling_conv_quick" if args.quick else "sampling_conv", result, plot(result))
    logging.info("wrote %s (load average %s -> %s)", path, load, result["load_average_end"])


if __name__ == "__main__":
    main()
