"""Peak memory of one training step (forward + backward): SPN on one random slice per image vs a flat PixelCNN.

The claim tested (Menick & Kalchbrenner 2018): an SPN trained on slices needs memory set by the slice, up to
S^2 less than a flat model of the same width and depth over the whole image.

Method (CPU; tracemalloc does not see torch's allocations): every configuration runs in a fresh subprocess, one
thread. It runs one warm-up training step (one-off set-up, gradient buffers), returns freed heap (``malloc_trim``),
resets the peak resident set size (``/proc/self/clear_refs``), runs a second step and reports the peak (``VmHWM``)
minus the resident size before it. It also reports the bytes of the tensors autograd saves for backward
(``saved_tensors_hooks``, each storage counted once, parameters excluded): an allocator-independent count of the
activation memory.

    python -m benchmarks.memory_spn [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

import torch

log = logging.getLogger(__name__)

# Same width and depth: 48 channels in the residual stream (PixelCNN's blocks carry 2h), 4 blocks.
MODELS = {
    "pixelcnn (flat)": ("pixelcnn", dict(hidden_channels=24, num_layers=4, first_kernel_size=7)),
    "spn S=2": ("spn", dict(hidden_channels=48, num_layers=4, num_heads=3, scale=2, train_slices=1)),
    "spn S=4": ("spn", dict(hidden_channels=48, num_layers=4, num_heads=3, scale=4, train_slices=1)),
    # the same SPNs with activation checkpointing of their attention blocks (recompute=True: same gradients)
    "spn S=2 recompute": ("spn", dict(hidden_channels=48, num_layers=4, num_heads=3, scale=2, recompute=True)),
    "spn S=4 recompute": ("spn", dict(hidden_channels=48, num_layers=4, num_heads=3, scale=4, recompute=True)),
}


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def worker(config: dict) -> dict:
    """One training step of one configuration; run in a fresh process."""
    import pixelmodels

    torch.manual_seed(0)
    name, hparams = MODELS[config["model"]]
    size, batch = config["size"], config["batch"]
    model = pixelmodels.build(name, image_shape=(3, size, size), num_levels=256, **hparams)
    x = torch.randint(256, (batch, 3, size, size))

    def step() -> torch.Tensor:
        slice_loss = getattr(model, "training_loss", None)  # SPN: random slices per image
        loss = slice_loss(x) if slice_loss else -model.log_prob(x).mean() / model.num_dims
        loss.backward()
        return loss

    step()  # warm-up: one-off library set-up and the gradient buffers are allocated here, not measured
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the step's peak is measured from a clean base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set size (VmHWM) to the current one
    baseline = _status_bytes("VmRSS")
    loss = step()
    peak = _status_bytes("VmHWM")
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return {
        **config,
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss_growth_mb": (peak - baseline) / 2**20,
        "saved_for_backward_mb": sum(saved.values()) / 2**20,
        "loss": loss.item(),
    }


def run_config(config: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_spn", "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], sizes: list[int]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in [
        (axes[0], "peak_rss_growth_mb", "peak RSS growth of one step (MiB)"),
        (axes[1], "saved_for_backward_mb", "tensors saved for backward (MiB)"),
    ]:
        for model in MODELS:
            ys = [next(r[key] for r in rows if r["model"] == model and r["size"] == s) for s in sizes]
            ax.plot(sizes, ys, marker="o", label=model)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{s}x{s}" for s in sizes])
        ax.set_xlabel("image size (RGB, K=256)")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("One training step, same width and depth: flat PixelCNN vs SPN (attention) on one slice per image")
    return fig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 and 64x64 only, batch 2")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="image sizes (full run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        torch.set_num_threads(1)
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from benchmarks.common import save_result

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes, batch = ([32, 64], 2) if args.quick else (args.sizes, 4)
    rows = []
    for size in sizes:
        for model in MODELS:
            row = run_config({"model": model, "size": size, "batch": batch})
            log.info("%-16s %4dx%-4d peak RSS +%8.1f MiB  saved %8.1f MiB", model, size, size,
                     row["peak_rss_growth_mb"], row["saved_for_backward_mb"])  # fmt: skip
            rows.append(row)
    ratios = {}
    for size in sizes:
        flat = next(r for r in rows if r["model"] == "pixelcnn (flat)" and r["size"] == size)
        for model in list(MODELS)[1:]:
            r = next(r for r in rows if r["model"] == model and r["size"] == size)
            ratios[f"{model} @ {size}"] = {
                "flat_over_spn_peak_rss": flat["peak_rss_growth_mb"] / r["peak_rss_growth_mb"],
                "flat_over_spn_saved": flat["saved_for_backward_mb"] / r["saved_for_backward_mb"],
            }
    for k, v in ratios.items():
        log.info(
            "%-22s flat/spn: peak RSS %.2fx, saved %.2fx", k, v["flat_over_spn_peak_rss"], v["flat_over_spn_saved"]
        )
    method = (
        "fresh subprocess per configuration, 1 thread; peak_rss_growth = VmHWM during a second training step (peak "
        "reset by /proc/self/clear_refs after a warm-up step and malloc_trim) minus VmRSS before it; "
        "saved_for_backward = bytes of distinct storages saved by "
        "autograd (saved_tensors_hooks), parameters excluded. SPN: model.training_loss (train_slices=1); "
        "flat: -log_prob(x).mean() / num_dims. Goal: flat/SPN >= 0.8 S^2."
    )
    data = {"method": method, "batch": batch, "models": MODELS, "rows": rows, "ratios": ratios}
    save_result("memory_spn", data, plot(rows, sizes))


if __name__ == "__main__":
    main()
