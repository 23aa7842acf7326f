"""PixelCNN++ sampling: cached ``fast_sample`` vs the naive sampler, ``python -m benchmarks.pixelcnn_pp_sampling``.

Both draw the same images (same parameters and random draws, checked here); the fast one is the cached sampler
of ``nn/shifted_cache.py`` (until 2026-12 it ran the network on rows 0..h only, the numbers in results/ from then
say so). ``benchmarks/sampling_conv.py`` measures it at 3x32x32 beside the other conv models. Median of 2 runs
(``--quick``: 1 run, 8x8) per image size, batch 32, the benchmark's small model (hidden 16, 2 blocks per stage,
5 logistics). Writes benchmarks/results/pixelcnn_pp_sampling.json and .png.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import median_time, save_result  # noqa: E402

HPARAMS = dict(hidden_channels=16, num_layers=2, num_mixtures=5, dropout=0.0)
BATCH = 32  # at batch 4 the per-layer overhead dominates on CPU and cropping rows gains nothing (~1.0x)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 only, one run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes, repeats = ([8], 1) if args.quick else ([8, 16], 2)
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = pixelmodels.build("pixelcnn_pp", image_shape=(3, size, size), num_levels=256, **HPARAMS).eval()

        def draw(method, model=model):
            return model.sample(BATCH, method=method, generator=torch.Generator().manual_seed(0))

        assert torch.equal(draw("fast"), draw("naive")), "the two samplers must draw the same images"
        naive = median_time(lambda: draw("naive"), repeats=repeats, warmup=0)
        fast = median_time(lambda: draw("fast"), repeats=repeats, warmup=0)
        rows.append({"size": size, "naive_seconds": naive, "fast_seconds": fast, "speedup": naive / fast})
        print(f"{size}x{size}: naive {naive:.2f} s, fast {fast:.2f} s, speed-up {naive / fast:.2f}x")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = [f"{r['size']}x{r['size']}" for r in rows]
    ax.bar([i - 0.2 for i in range(len(rows))], [r["naive_seconds"] for r in rows], 0.4, label="naive")
    ax.bar([i + 0.2 for i in range(len(rows))], [r["fast_seconds"] for r in rows], 0.4, label="fast (cached)")
    ax.set_xticks(range(len(rows)), labels)
    ax.set(ylabel=f"seconds for {BATCH} samples", title="PixelCNN++ sampling, CPU")
    ax.legend()
    name = "pixelcnn_pp_sampling" + ("_quick" if args.quick else "")
    print(save_result(name, {"hparams": HPARAMS, "batch": BATCH, "threads": args.threads, "results": rows}, fig))


if __name__ == "__main__":
    main()
