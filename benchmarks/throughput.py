"""Training throughput (images/s) of every registered model: ``python -m benchmarks.throughput [--quick]``.

One training step is what the trainer does: the next batch from ``DataOrder`` through ``BatchLoader`` (uint8
tensors, a prefetch thread, pinned memory + ``non_blocking`` on CUDA), the float32 log-likelihood objective
(under autocast for bf16 / fp16), backward, gradient clipping, an Adam step (with GradScaler for fp16) and the
EMA update. Every model in ``pixelmodels.available_models()`` is built with the same small hyper-parameters
where it has them (``SMALL``; the parameter count is recorded next to each figure, since "the same" settings
are not the same network size across families). The images are random uint8 values: throughput does not
depend on them. Each figure is the median over repeats of a timed loop of steps; precisions are measured side
by side in one run (fp32 and bf16 on a CPU; fp32, bf16 and fp16 on a GPU).

Writes benchmarks/results/throughput.json and .png.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import median_time, save_result  # noqa: E402
from pixelmodels.registry import get_model_class, hyperparameters  # noqa: E402
from pixelmodels.training.config import OptimConfig  # noqa: E402
from pixelmodels.training.trainer import (  # noqa: E402
    BatchLoader,
    DataOrder,
    LogProbObjective,
    amp_dtype,
    build_optimizer,
    update_ema,
)

log = logging.getLogger(__name__)

# Applied to every model that has the keyword; everything else keeps the model's default.
SMALL = {"hidden_channels": 32, "num_layers": 4, "context_layers": 2, "dropout": 0.0}


def small_hparams(name: str) -> dict:
    valid = hyperparameters(get_model_class(name))
    return {k: v for k, v in SMALL.items() if k in valid}


class StepLoop:
    """The trainer's step, repeated ``steps`` times per call."""

    def __init__(self, name: str, image_shape, num_levels: int, batch: int, precision: str, device, prefetch: int):
        torch.manual_seed(0)
        self.model = pixelmodels.build(name, image_shape=image_shape, num_levels=num_levels, **small_hparams(name))
        self.model.to(device).train()
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        amp = amp_dtype(precision, device)
        self.objective = LogProbObjective(self.model, amp)
        self.optimizer = build_optimizer(self.model, OptimConfig(lr=1e-4))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
        images = torch.randint(0, num_levels, (max(1024, 4 * batch), *image_shape), dtype=torch.uint8)
        labels = None
        if self.model.num_classes is not None:
            labels = torch.randint(0, self.model.num_classes, (len(images),))
        self.loader = BatchLoader(DataOrder(len(images), batch, seed=0), images, labels, device, prefetch)
        self.step = 0

    def __call__(self, steps: int) -> float:
        for _ in range(steps):
            x, cond = self.loader.next()  # (B, C, H, W) long
            loss = -self.objective(x, cond).mean() / self.model.num_dims
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            update_ema(self.ema, self.model, 0.999, self.step)
            self.step += 1
        return loss.item()

    def close(self) -> None:
        self.loader.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images, fewer steps and repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: on a shared, oversubscribed CPU more "
        "threads spin in OpenMP barriers and run up to 100x slower; 0 = torch's default)",
    )  # fmt: skip
    parser.add_argument("--models", nargs="*", help="only these models (default: all registered)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        image_shape, num_levels, batch, steps, repeats = (1, 8, 8), 17, 16, 2, 3
    else:
        image_shape, num_levels, batch, steps, repeats = (1, 28, 28), 256, 32, 2, 5
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    names = args.models or pixelmodels.available_models()
    rows = []
    for name in names:
        for precision in precisions:
            row = {"model": name, "precision": precision, "hparams": small_hparams(name)}
            try:
                loop = StepLoop(name, image_shape, num_levels, batch, precision, device, prefetch=2)
                try:
                    row["parameters"] = sum(p.numel() for p in loop.model.parameters())
                    seconds = median_time(lambda loop=loop: loop(steps), repeats=repeats, warmup=1)
                    row["final_loss"] = loop(1)
                finally:
                    loop.close()
                row["images_per_s"] = steps * batch / seconds
                row["step_ms"] = 1000 * seconds / steps
                log.info("%-16s %-5s %8.1f images/s  (%.1f ms/step, %d parameters)",
                         name, precision, row["images_per_s"], row["step_ms"], row["parameters"])  # fmt: skip
            except Exception as err:  # recorded, not hidden: one model failing does not stop the others
                row["error"] = f"{type(err).__name__}: {err}"
                log.warning("%s %s failed: %s", name, precision, row["error"])
            rows.append(row)

    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(names), 3.6))
    width = 0.8 / len(precisions)
    for i, precision in enumerate(precisions):
        values = [
            next(r.get("images_per_s", math.nan) for r in rows if r["model"] == n and r["precision"] == precision)
            for n in names
        ]
        ax.bar([j + i * width for j in range(len(names))], values, width, label=precision)
    ax.set_xticks([j + width * (len(precisions) - 1) / 2 for j in range(len(names))], names, rotation=20)
    ax.set_ylabel("training images / s")
    ax.set_title(f"training step loop, {image_shape[1]}x{image_shape[2]}, batch {batch}, {device.type}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    settings = {
        "image_shape": list(image_shape), "num_levels": num_levels, "batch_size": batch, "steps_per_repeat": steps,
        "repeats": repeats, "device": str(device), "quick": args.quick, "small_hparams": SMALL,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    path = save_result("throughput", {"settings": settings, "results": rows}, fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
