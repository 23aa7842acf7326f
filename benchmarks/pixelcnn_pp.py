"""PixelCNN++ vs PixelCNN on RGB data, same data and budget: ``python -m benchmarks.pixelcnn_pp [--quick]``.

Data: ``photos`` (16x16 RGB patches of scikit-learn's two sample photographs, 256 levels, offline), train split
for training, the test split (image regions never trained on) for bits/dim. Models: PixelCNN (256-way softmax
per sub-pixel), PixelCNN with the DMoL head, and PixelCNN++ (DMoL, three resolutions) at widths 16 and 32;
small CPU sizes.
Each trains the same number of Adam steps on the same batches (batch 16, lr 2e-3, seed 0). Measured:
training throughput (images/s from the median step time, forward + backward + update) and exact test bits/dim
after the budget (eval mode, no EMA). Writes benchmarks/results/pixelcnn_pp.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import RESULTS, save_result  # noqa: E402
from pixelmodels.data import load_dataset  # noqa: E402

SIZE, BATCH, LR = 16, 16, 2e-3
MODELS = {
    "pixelcnn": ("pixelcnn", dict(hidden_channels=32, num_layers=5, first_kernel_size=5)),
    "pixelcnn+dmol": ("pixelcnn", dict(hidden_channels=32, num_layers=5, first_kernel_size=5, head="dmol")),
    "pixelcnn_pp-16": ("pixelcnn_pp", dict(hidden_channels=16, num_layers=2, num_mixtures=5, dropout=0.0)),
    "pixelcnn_pp-32": ("pixelcnn_pp", dict(hidden_channels=32, num_layers=2, num_mixtures=5, dropout=0.0)),
}


def bits_per_dim(model, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        nats = sum(-model.log_prob(batch.long()).sum().item() for batch in images.split(64))
    model.train()
    return nats / (images.shape[0] * model.num_dims * math.log(2))


def run(name: str, train: torch.Tensor, test: torch.Tensor, steps: int, log_every: int) -> dict:
    family, hparams = MODELS[name]
    torch.manual_seed(0)
    model = pixelmodels.build(family, image_shape=(3, SIZE, SIZE), num_levels=256, **hparams)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(0)  # the same batches for every model
    step_times, curve = [], []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = train[torch.randint(len(train), (BATCH,), generator=order)].long()
        t0 = time.perf_counter()
        loss = -model.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step_times.append(time.perf_counter() - t0)
        if step % log_every == 0 or step == 1:
            curve.append((step, loss.item() / (model.num_dims * math.log(2))))
    wall = time.perf_counter() - start
    return {
        "model": family,
        "hparams": hparams,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "train_seconds": wall,
        "images_per_second": BATCH / statistics.median(step_times),
        "train_bpd_curve": curve,
        "test_bits_per_dim": bits_per_dim(model, test),
    }


def plot(results: dict, steps: int, threads: int):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for name, r in results.items():
        s, bpd = zip(*r["train_bpd_curve"], strict=True)
        ax1.plot(s, bpd, label=f"{name} (test {r['test_bits_per_dim']:.2f})")
    ax1.set(xlabel="step (batch 16)", ylabel="train bits/dim", title=f"photos {SIZE}x{SIZE} RGB, {steps} steps")
    ax1.legend()
    names = list(results)
    ax2.bar(names, [results[n]["images_per_second"] for n in names], color=[f"C{i}" for i in range(len(names))])
    ax2.set(ylabel="images/s (train step, CPU)", title=f"training throughput, {threads} thread(s)")
    ax2.tick_params(axis="x", labelrotation=20)
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 steps instead of 300 (written to pixelcnn_pp_quick.json)"
    )
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the shared machine is loaded)")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the saved JSON, no training")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((RESULTS / "pixelcnn_pp.json").read_text())
        plot(saved["results"], saved["steps"], saved["threads"]).savefig(
            RESULTS / "pixelcnn_pp.png", dpi=120, bbox_inches="tight"
        )
        return
    torch.set_num_threads(args.threads)
    steps = args.steps or (20 if args.quick else 300)
    train = load_dataset("photos", "train", size=SIZE).images  # (N, 3, 16, 16) uint8
    test = load_dataset("photos", "test", size=SIZE).images
    results = {name: run(name, train, test, steps, log_every=max(1, steps // 20)) for name in MODELS}
    for name, r in results.items():
        print(
            f"{name:14s} params {r['parameters']:>8d}  {r['images_per_second']:7.1f} img/s  "
            f"test {r['test_bits_per_dim']:.3f} bits/dim after {steps} steps ({r['train_seconds']:.0f} s)"
        )

    fig = plot(results, steps, args.threads)
    data = {
        "data": {"dataset": "photos", "size": SIZE, "train_images": len(train), "test_images": len(test)},
        "batch_size": BATCH,
        "lr": LR,
        "steps": steps,
        "threads": args.threads,
        "results": results,
    }
    print(save_result("pixelcnn_pp" + ("_quick" if args.quick else ""), data, fig))


if __name__ == "__main__":
    main()
