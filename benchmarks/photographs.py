"""Every RGB model on real photographs at equal CPU time: ``python -m benchmarks.photographs [--quick]``.

Each model is its ``<model>-photographs`` preset (32x32 random crops of the 40 training photographs,
``pixelmodels.training.presets``), trained with the project's trainer on one thread for the same wall-clock
budget: the script first times ``PROBE_STEPS`` training steps of the preset's model (median s/step, forward +
backward + Adam, batch 16), then trains ``budget / (s/step)`` steps so the cosine schedule ends on time.
Measured on Kodak (test data only; nothing is tuned on it), with the EMA weights of the best checkpoint:

- bits/dim on 32x32 Kodak patches (the grid of ``load_dataset("kodak", "test")``; ``--quick``: an evenly
  spaced subset of ``--quick-patches`` of them);
- bits per sub-pixel on whole Kodak images (``pixelmodels.evaluate.images_nll``), for the models that can
  evaluate a 768x512 image (all of these can; a refusal would be recorded with its reason). ``--quick``: only
  the first ``--quick-images`` images, so the number is for that subset, not the suite;
- a 4x4 sample grid per model (``benchmarks/results/photographs_samples_<model>.png``).

Full mode (``--budget 3600``, one CPU-hour each, ~8 hours in all) was not run in the session that wrote this;
``docs/benchmarks.md`` says which mode its table comes from. Writes ``benchmarks/results/photographs.json``
and ``photographs.png`` (``photographs_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import pixelmodels
from benchmarks.common import save_result
from pixelmodels.data import dataset_images, load_dataset, resolve_data_dir
from pixelmodels.evaluate import dataset_nll, images_nll
from pixelmodels.training import apply_overrides, get_preset, load_checkpoint
from pixelmodels.viz import save_grid

PRESETS = {
    "pixelcnn": "pixelcnn-photographs",
    "pixelcnn+dmol": "pixelcnn_dmol-photographs",
    "row_lstm": "row_lstm-photographs",
    "diagonal_bilstm": "diagonal_bilstm-photographs",
    "gated_pixelcnn": "gated_pixelcnn-photographs",
    "pixelcnn_pp": "pixelcnn_pp-photographs",
    "spn": "spn-photographs",
}
PROBE_STEPS = 4  # timed training steps per model (after one untimed)


def seconds_per_step(config) -> float:
    """Median wall time of one training step of the preset's model (batch of random training crops)."""
    d = config.data
    train = load_dataset(d.dataset, "train", data_dir=d.data_dir, num_levels=d.num_levels, **d.options)
    model = pixelmodels.build(config.model.name, image_shape=train.image_shape, num_levels=train.num_levels,
                              **config.model.hparams).train()  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    idx = torch.arange(d.batch_size)
    times = []
    for i in range(PROBE_STEPS + 1):
        x = (train.random_crops.batch(idx + i * d.batch_size, 0, 0) if train.random_crops is not None
             else train.images[idx]).long()  # fmt: skip
        start = time.perf_counter()
        estimate = getattr(model, "estimate_log_prob", None)  # what the trainer optimises (SPN: a slice)
        loss = -(estimate(x) if estimate else model.log_prob(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run_model(label: str, args, data_dir: Path, workdir: Path) -> dict:
    config = apply_overrides(get_preset(PRESETS[label]), [f"data.data_dir={data_dir}", "train.num_threads=1"])
    s_step = seconds_per_step(config)
    steps = max(10, round(args.budget / s_step))
    every = max(1, steps // 4)
    config = apply_overrides(config, [f"train.steps={steps}", f"train.eval_every={every}", "train.sample_every=0",
                                      f"train.checkpoint_every={every}", f"optim.warmup_steps={min(200, steps // 10)}",
                                      f"data.max_test_images={args.test_patches}"])  # fmt: skip
    start = time.perf_counter()
    run = pixelmodels.train(config, workdir / label, overwrite=True, progress=False)
    wall = time.perf_counter() - start
    results = json.loads((run / "results.json").read_text())
    model = load_checkpoint(run)
    kodak = load_dataset("kodak", "test", data_dir=data_dir, size=32)
    x = kodak.images
    if args.kodak_patches and args.kodak_patches < len(x):
        x = x[torch.linspace(0, len(x) - 1, args.kodak_patches).round().long()]
    t0 = time.perf_counter()
    patches = dataset_nll(model, x, batch_size=64)
    t_patches = time.perf_counter() - t0
    whole, reason = None, None
    images = dataset_images("kodak", "test", data_dir)[: args.kodak_images or None]
    t0 = time.perf_counter()
    try:
        whole = images_nll(model, images).to_dict()
    except ValueError as err:
        reason = str(err)
    t_whole = time.perf_counter() - t0
    grid = Path(args.out_prefix + f"_samples_{label.replace('+', '_')}.png")
    gen = torch.Generator().manual_seed(0)
    save_grid(model.sample(16, generator=gen), grid, model.num_levels, nrow=4, scale=2)
    return {
        "model": label,
        "preset": PRESETS[label],
        "hparams": config.model.hparams,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": s_step,
        "steps_for_one_hour": round(3600 / s_step),
        "steps": steps,
        "train_time_s": results["train_time_s"],
        "wall_s": wall,
        "valid_bits_per_dim": results["best_valid_bits_per_dim"],
        "photographs_test_bits_per_dim": results["test"]["bits_per_dim"],
        "kodak_patches": {**patches.to_dict(), "eval_s": t_patches},
        "kodak_whole": whole,
        "kodak_whole_images": len(images),
        "kodak_whole_eval_s": t_whole,
        "kodak_whole_refused": reason,
        "samples": grid.name,
    }


def plot(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [r["model"] for r in rows]
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [r["kodak_patches"]["bits_per_dim"] for r in rows], 0.4, label="Kodak 32x32")
    whole = [r["kodak_whole"]["bits_per_dim"] if r["kodak_whole"] else 0 for r in rows]
    ax.bar([p + 0.2 for p in pos], whole, 0.4, label="whole Kodak images")
    ax.set_xticks(list(pos), labels, rotation=20)
    ax.set_ylabel("bits per sub-pixel")
    ax.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short budget, Kodak subsets (see the module doc)")
    parser.add_argument("--budget", type=float, help="seconds of training per model (3600; --quick: 120)")
    parser.add_argument("--models", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--data-dir", help="where wikipedia_photos/ and kodak/ are ($PIXELMODELS_DATA)")
    parser.add_argument("--quick-patches", type=int, default=768, help="Kodak patches scored with --quick")
    parser.add_argument("--quick-images", type=int, default=1, help="whole Kodak images scored with --quick")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.budget = args.budget or (120.0 if args.quick else 3600.0)
    args.kodak_patches = args.quick_patches if args.quick else None
    args.kodak_images = args.quick_images if args.quick else None
    args.test_patches = 256 if args.quick else 1024
    name = "photographs_quick" if args.quick else "photographs"
    args.out_prefix = str(Path(__file__).resolve().parent / "results" / name)
    data_dir = resolve_data_dir(args.data_dir)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pixelmodels-photographs-") as tmp:
        for label in args.models:
            rows.append(run_model(label, args, data_dir, Path(tmp)))
            r = rows[-1]
            whole = r["kodak_whole"]["bits_per_dim"] if r["kodak_whole"] else r["kodak_whole_refused"]
            print(f"{label}: {r['steps']} steps, Kodak patches {r['kodak_patches']['bits_per_dim']:.3f}, "
                  f"whole {whole}", flush=True)  # fmt: skip
            data = {"mode": "quick" if args.quick else "full", "budget_s": args.budget, "threads": 1,
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "results": rows}  # fmt: skip
            path = save_result(name, data, plot(rows))  # after every model: a long run keeps what it measured
    print(path)


if __name__ == "__main__":
    main()
