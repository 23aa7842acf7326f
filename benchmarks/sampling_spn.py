"""SPN sampling speed: the slice-by-slice sampler (``fast_sample``) vs the naive sampler, side by side.

The naive sampler reruns the whole network (context network + decoder over all S*S slices) at every step; the
slice-by-slice sampler runs the context network once per slice and the decoder on one slice per step. Neither
caches inside a slice.

    python -m benchmarks.sampling_spn [--quick]
"""

from __future__ import annotations

import argparse
import logging

import torch

import pixelmodels
from benchmarks.common import median_time, save_result

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images only, one repeat")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)  # tiny batches: a second thread only adds synchronisation on a shared CPU
    sizes, repeats = ([8], 1) if args.quick else ([8, 16], 3)
    hparams = dict(hidden_channels=16, num_layers=2, context_layers=2)
    rows = []
    for size in sizes:
        for scale in (2, 4):
            torch.manual_seed(0)
            model = pixelmodels.build("spn", image_shape=(3, size, size), num_levels=256, scale=scale, **hparams)
            times = {
                method: median_time(lambda m=method, net=model: net.sample(4, method=m), repeats=repeats, warmup=0)
                for method in ("naive", "fast")
            }
            row = {"size": size, "scale": scale, **times, "speedup": times["naive"] / times["fast"]}
            log.info("%2dx%-2d S=%d naive %.2fs fast %.2fs speed-up %.1fx", size, size, scale, *times.values(),
                     row["speedup"])  # fmt: skip
            rows.append(row)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = [f"{r['size']}x{r['size']}\nS={r['scale']}" for r in rows]
    ax.bar(labels, [r["speedup"] for r in rows])
    ax.set_ylabel("naive time / slice-by-slice time")
    ax.set_title("SPN sampling, batch 4, RGB K=256")
    save_result("sampling_spn", {"batch": 4, "hparams": hparams, "rows": rows}, fig)


if __name__ == "__main__":
    main()
