"""Memory of the cached samplers' activation caches at the paper size, ``python -m benchmarks.sampling_memory``.

Analytic: the caches a fast sampler allocates (recorded while it runs its first step) at batch 256, 3x32x32,
K=256, summed buffer by buffer; "full height" is what the same caches held before they became kernel-tall rings
(``H + kr - 1`` rows instead of ``kr``). Measured: peak resident memory (Linux VmHWM, reset through
/proc/self/clear_refs) while the fast sampler draws the first two rows at ``--measure-batch``, in a fresh
process per model and per source tree (``--compare-src``: another checkout's ``src``, e.g. one with the
full-height caches), so both layouts are measured by the same code.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import pixelmodels
from benchmarks.common import save_result

SHAPE, LEVELS, HEIGHT = (3, 32, 32), 256, 32
#: pixelcnn: the pixelcnn-cifar10 preset (PixelRNN paper, section 5); gated_pixelcnn: no paper preset here, the
#: same width and depth with the Gated PixelCNN's 5x5 receptive field; pixelcnn_pp: the pixelcnn_pp-cifar10 preset.
MODELS = {
    "pixelcnn": dict(hidden_channels=128, num_layers=15, output_channels=1024),
    "gated_pixelcnn": dict(hidden_channels=128, num_layers=15, kernel_size=5),
    "pixelcnn_pp": dict(hidden_channels=160, num_layers=5, num_resolutions=3, num_mixtures=10, dropout=0.5),
}


def record_caches(name: str, batch: int) -> list[tuple[str, int, int]]:
    """(cache class, bytes, rows held) of every cache the fast sampler creates, from its first step."""
    from pixelmodels.nn import cache, shifted_cache

    found = []
    originals = {cls: cls.__init__ for cls in (cache.ConvCache, shifted_cache.RowCache, shifted_cache.PixelCache)}

    def recording(cls):
        def init(self, *args, **kwargs):
            originals[cls](self, *args, **kwargs)
            found.append(self)

        return init

    model = pixelmodels.build(name, image_shape=SHAPE, num_levels=LEVELS, **MODELS[name]).eval()
    full = model.order()
    model._order = full[:1]
    try:
        for cls in originals:
            cls.__init__ = recording(cls)
        model.sample(batch, method="fast", generator=torch.Generator().manual_seed(0))
    finally:
        for cls, init in originals.items():
            cls.__init__ = init
        model._order = full
    rows = []
    for c in found:
        held = c.buffer.shape[2] if isinstance(c, cache.ConvCache | shifted_cache.RowCache) else c.buffer.shape[1]
        rows.append((type(c).__name__, c.buffer.numel() * c.buffer.element_size(), held))
    return rows


def analytic(name: str, batch: int) -> dict:
    caches = record_caches(name, batch)
    after = sum(b for _, b, _ in caches)
    # before the rings, a ConvCache held H + kr - 1 rows; PixelCNN++ had no cache (its sampler reran the rows above)
    before = sum(b * (HEIGHT + r - 1) // r if kind == "ConvCache" else b for kind, b, r in caches)
    full_height = None if name == "pixelcnn_pp" else before
    return {"caches": len(caches), "kernel_tall_bytes": after, "full_height_bytes": full_height}


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(name: str, batch: int) -> dict:
    """Peak RSS growth while the fast sampler draws the first two image rows (this process)."""
    torch.set_num_threads(1)
    model = pixelmodels.build(name, image_shape=SHAPE, num_levels=LEVELS, **MODELS[name]).eval()
    full = model.order()
    model._order = full[: len(full) // HEIGHT * 2]
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start = _status("VmRSS")
    model.sample(batch, method="fast", generator=torch.Generator().manual_seed(0))
    return {"peak_rss_growth_bytes": _status("VmHWM") - start}


def measure_in(src: str | None, name: str, batch: int) -> dict:
    env = dict(os.environ, **({"PYTHONPATH": f"{src}{os.pathsep}{Path.cwd()}"} if src else {}))
    code = f"import json; from benchmarks.sampling_memory import measure; print(json.dumps(measure({name!r}, {batch})))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], batch: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(rows))
    full = [(r["full_height_bytes"] or 0) / 2**20 for r in rows]
    ax.bar([x - 0.2 for x in xs], full, 0.4, label="full-height buffers")
    ax.bar([x + 0.2 for x in xs], [r["kernel_tall_bytes"] / 2**20 for r in rows], 0.4, label="kernel-tall rings")
    ax.set_xticks(list(xs), [r["model"] for r in rows])
    ax.set(ylabel=f"cache MiB at batch {batch}", title="Sampler caches, 3x32x32 K=256, paper-size models")
    ax.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--measure-batch", type=int, default=32)
    parser.add_argument("--compare-src", help="another checkout's src directory, measured the same way")
    parser.add_argument("--quick", action="store_true", help="batch 4, measured at batch 2 (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.measure_batch = 4, 2
    rows = []
    for name in MODELS:
        row = {"model": name, "hparams": MODELS[name], **analytic(name, args.batch)}
        small = analytic(name, args.measure_batch)
        row["measured"] = {
            "batch": args.measure_batch,
            "kernel_tall_bytes": small["kernel_tall_bytes"],
            "full_height_bytes": small["full_height_bytes"],
            "this_src": measure_in(None, name, args.measure_batch),
        }
        if args.compare_src:
            row["measured"]["compare_src"] = measure_in(args.compare_src, name, args.measure_batch)
        rows.append(row)
        print(json.dumps(row))
    result = {"batch": args.batch, "shape": SHAPE, "levels": LEVELS, "compare_src": args.compare_src, "rows": rows}
    print(save_result("sampling_memory" + "_quick" * args.quick, result, plot(rows, args.batch)))


if __name__ == "__main__":
    main()
