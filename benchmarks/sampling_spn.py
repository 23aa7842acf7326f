"""SPN sampling speed: the cached sampler (``fast_sample``) vs the naive sampler, side by side in one run.

The naive sampler (``sampling.naive_sample``) reruns the whole network (context network + decoder over all S*S
slices) at every step. The cached sampler runs the context network once per slice and steps the decoder one
position at a time with key/value caches (``nn.attention``). Both draw the same images for the same seed
(tests/test_spn.py). Times are also given in full forward passes of the same model and batch.

    python -m benchmarks.sampling_spn [--quick] [--sizes 8 16 32]
"""

from __future__ import annotations

import argparse
import logging
import os

import torch

import pixelmodels
from benchmarks.common import median_time, save_result

log = logging.getLogger(__name__)

HPARAMS = dict(hidden_channels=48, num_layers=4, num_heads=3, context_layers=2, context_attention_layers=2)
BATCH = 4


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images only, one repeat")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16], help="image sizes (full run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)  # tiny batches: a second thread only adds synchronisation on a shared CPU
    sizes, repeats = ([8], 1) if args.quick else (args.sizes, 3)
    rows = []
    for size in sizes:
        for scale in (2, 4):
            torch.manual_seed(0)
            model = pixelmodels.build("spn", image_shape=(3, size, size), num_levels=256, scale=scale, **HPARAMS)
            model.eval()
            x = torch.randint(256, (BATCH, 3, size, size))
            with torch.no_grad():
                forward = median_time(lambda m=model, x=x: m(x), repeats=5, warmup=1)
            times = {
                method: median_time(lambda m=method, net=model: net.sample(BATCH, method=m), repeats=repeats, warmup=0)
                for method in ("naive", "fast")
            }
            row = {"size": size, "scale": scale, "forward_s": forward, **times}
            row |= {"speedup": times["naive"] / times["fast"], "fast_in_forwards": times["fast"] / forward,
                    "naive_in_forwards": times["naive"] / forward}  # fmt: skip
            log.info("%2dx%-2d S=%d naive %.2fs cached %.2fs speed-up %.1fx; cached = %.0f forward passes", size, size,
                     scale, times["naive"], times["fast"], row["speedup"], row["fast_in_forwards"])  # fmt: skip
            rows.append(row)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = [f"{r['size']}x{r['size']}\nS={r['scale']}" for r in rows]
    ax.bar(labels, [r["speedup"] for r in rows])
    ax.set_ylabel("naive time / cached time")
    ax.set_title(f"SPN sampling, batch {BATCH}, RGB K=256, 1 thread")
    data = {"batch": BATCH, "hparams": HPARAMS, "rows": rows, "load_average": os.getloadavg()}
    save_result("sampling_spn", data, fig)


if __name__ == "__main__":
    main()
