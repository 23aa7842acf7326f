"""Test NLL of every registered model under one fixed budget: ``python -m benchmarks.likelihood [--quick]``.

For each model in ``pixelmodels.available_models()`` with an entry in ``MODELS`` (a model without one is
reported as skipped, never dropped), train with the project's trainer (``pixelmodels.train`` on a
``RunConfig``: Adam, warm-up + cosine decay, gradient clipping, EMA) on

- binarized MNIST (28x28, 2 levels): test NLL in nats per image, as in the PixelRNN paper's Table 4;
- RGB: CIFAR-10 (32x32) when its files are in the data directory, else the offline ``photos`` patches at 16x16
  (scikit-learn's two sample photographs cut on a grid, labelled as such): test bits/dim.

Evaluation uses the EMA weights (the trainer's best checkpoint, which with one evaluation at the end is the
last step). ``--quick`` scores an evenly spaced, fixed subset of the test split (``data.max_test_images``; the
binarized MNIST test split is sorted by class, so a prefix would be one digit); full mode scores the whole test
split. The budgets are in ``BUDGETS``; steps and wall time of every run are recorded.

The published numbers (``PAPERS``) come from days of GPU training of models 10-100x larger; ours are a fixed CPU
budget, so they show that every model learns and how the families compare at equal small cost, not a
reproduction of the absolute values. Writes ``benchmarks/results/likelihood.json`` and ``.png`` (full mode:
``likelihood_full.*``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import save_result  # noqa: E402
from pixelmodels.data import dataset_info, resolve_data_dir  # noqa: E402
from pixelmodels.training import RunConfig  # noqa: E402

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
# The project's read-only copies: ../shared/data beside the repository (or beside a worktree's parent).
SHARED_DATA = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared").is_dir()), ROOT.parent / "shared")

# Small, comparable hyper-parameters: ~2 x 16 features per layer everywhere (the PixelRNN paper's MNIST width,
# h = 16), depth cut so one training step costs about the same order on a CPU. "rgb" / "binarized_mnist"
# entries override the common ones for that data.
MODELS: dict[str, dict] = {
    "pixelcnn": {"common": {"hidden_channels": 16, "num_layers": 5}},
    "row_lstm": {"common": {"hidden_channels": 16, "num_layers": 2}},
    "diagonal_bilstm": {"common": {"hidden_channels": 16, "num_layers": 2}},
    "gated_pixelcnn": {"common": {"hidden_channels": 16, "num_layers": 5}},
    "pixelcnn_pp": {
        "common": {"hidden_channels": 16, "num_layers": 1, "num_resolutions": 3, "dropout": 0.0},
        "binarized_mnist": {"head": "categorical"},  # a 2-way softmax, like every other model here
    },
    "spn": {"common": {"hidden_channels": 18, "num_layers": 2, "context_layers": 2}},  # heads split 3 colour groups
}

# Fixed budgets. Batch 16 as in the PixelRNN paper. max_test: None = the whole test split.
BUDGETS = {
    "quick": {
        "binarized_mnist": {"steps": 60, "batch_size": 16, "max_test": 300},
        "rgb": {"steps": 60, "batch_size": 16, "max_test": 300},
    },
    "full": {
        "binarized_mnist": {"steps": 3000, "batch_size": 16, "max_test": None},  # ~1 epoch of the 50k images
        "rgb": {"steps": 2000, "batch_size": 16, "max_test": None},
    },
}

# Published test NLL: nats (binarized MNIST) or bits/dim (CIFAR-10), with the source.
PAPERS: dict[str, dict[str, list[tuple[str, float]]]] = {
    "pixelcnn": {
        "binarized_mnist": [("PixelRNN paper, Table 4", 81.30), ("pytorch-generative README", 81.45)],
        "cifar10": [("PixelRNN paper, Table 5", 3.14)],
    },
    "row_lstm": {"binarized_mnist": [("PixelRNN paper, Table 4", 80.54)], "cifar10": [("PixelRNN, Table 5", 3.07)]},
    "diagonal_bilstm": {
        "binarized_mnist": [("PixelRNN paper, Table 4 (7 layers)", 79.20)],
        "cifar10": [("PixelRNN paper, Table 5", 3.00)],
    },
    "gated_pixelcnn": {
        "binarized_mnist": [("pytorch-generative README", 81.50)],
        "cifar10": [("Conditional PixelCNN paper, Table 1", 3.03)],
    },
    "pixelcnn_pp": {"cifar10": [("PixelCNN++ paper, Table 1", 2.92)]},
}


def model_hparams(name: str, data_key: str) -> dict:
    entry = MODELS[name]
    return {**entry.get("common", {}), **entry.get(data_key, {})}


def data_dir_from(arg: str | None) -> Path:
    """``--data-dir``, else $PIXELMODELS_DATA, else $PIXELMODELS_TEST_DATA or ../shared/data when present."""
    if arg is None and not os.environ.get("PIXELMODELS_DATA"):
        for candidate in (os.environ.get("PIXELMODELS_TEST_DATA"), SHARED_DATA):
            if candidate and Path(candidate).is_dir():
                return Path(candidate)
    return resolve_data_dir(arg)


def run_config(name: str, dataset: str, options: dict, budget: dict, data_dir: Path, threads: int) -> RunConfig:
    data_key = "binarized_mnist" if dataset == "binarized_mnist" else "rgb"
    steps = budget["steps"]
    return RunConfig.from_dict(
        {
            "model": {"name": name, "hparams": model_hparams(name, data_key)},
            "data": {
                "dataset": dataset,
                "data_dir": str(data_dir),
                "batch_size": budget["batch_size"],
                "eval_batch_size": 100,
                "max_eval_images": 200,  # validation only picks the best checkpoint: one evaluation, at the end
                "max_test_images": budget["max_test"],
                "options": options,
            },
            "optim": {"lr": 2e-3, "warmup_steps": max(1, steps // 20), "schedule": "cosine", "ema_decay": 0.995},
            "train": {
                "steps": steps,
                "log_every": max(1, steps // 30),
                "eval_every": steps,
                "sample_every": 0,
                "checkpoint_every": steps,
                "num_samples": 4,
                "seed": 0,
                "num_threads": threads,
            },
        }
    )


def train_one(config: RunConfig, keep: Path | None) -> dict:
    """Train ``config`` with the project's trainer; return the test result, budget and training curve."""
    with tempfile.TemporaryDirectory() as tmp:
        base = keep if keep is not None else Path(tmp)
        run_dir = base / f"{config.model.name}-{config.data.dataset}"
        start = time.perf_counter()
        pixelmodels.train(config, run_dir, overwrite=True, progress=False)
        wall = time.perf_counter() - start
        results = json.loads((run_dir / "results.json").read_text())
        curve = [
            (r["step"], r["bits_per_dim"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r.get("split") == "train" and "bits_per_dim" in r
        ]
        model = pixelmodels.load_checkpoint(run_dir)
        params = sum(p.numel() for p in model.parameters())
    test = results["test"]
    return {
        "parameters": params,
        "steps": results["steps"],
        "train_time_s": round(results["train_time_s"], 1),
        "wall_s_with_test": round(wall, 1),
        "test_nll_nats": round(test["nll_nats"], 3),
        "test_bits_per_dim": round(test["bits_per_dim"], 4),
        "test_images": test["num_images"],
        "train_curve": curve,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets and a 300-image test subset (minutes)")
    parser.add_argument("--data-dir", help="data directory (default: $PIXELMODELS_DATA, else ../shared/data)")
    parser.add_argument("--models", nargs="*", help="only these models (default: every registered one)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared 2-core box)")
    parser.add_argument(
        "--steps", type=int, help="override the mode's step budget (results: likelihood[_full]_<N>steps)"
    )
    parser.add_argument("--keep-runs", type=Path, help="keep the run directories here (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mode = "quick" if args.quick else "full"
    data_dir = data_dir_from(args.data_dir)

    datasets: list[tuple[str, str, dict]] = []  # (key, dataset name, options)
    skipped_data = {}
    if dataset_info("binarized_mnist", data_dir)["files_present"]:
        datasets.append(("binarized_mnist", "binarized_mnist", {}))
    else:
        skipped_data["binarized_mnist"] = f"files not found under {data_dir}"
    if dataset_info("cifar10", data_dir)["files_present"]:
        datasets.append(("rgb", "cifar10", {}))
    else:
        skipped_data["cifar10"] = f"files not found under {data_dir}; using the offline photos set at 16x16"
        datasets.append(("rgb", "photos", {"size": 16}))

    registered = pixelmodels.available_models()
    names = [m for m in registered if args.models is None or m in args.models]
    skipped_models = {m: "no entry in benchmarks/likelihood.py MODELS" for m in names if m not in MODELS}
    rows, failed = [], []
    for key, dataset, options in datasets:
        budget = dict(BUDGETS[mode][key], **({"steps": args.steps} if args.steps else {}))
        for name in (m for m in names if m in MODELS):
            config = run_config(name, dataset, options, budget, data_dir, args.threads)
            print(f"-- {name} on {dataset}: {budget['steps']} steps x batch {budget['batch_size']}", flush=True)
            row = {"model": name, "dataset": dataset, "options": options, "hparams": config.model.hparams, **budget}
            try:
                row.update(train_one(config, args.keep_runs))
            except Exception as err:  # recorded and reported: one broken model must not hide the others
                log.exception("%s on %s failed", name, dataset)
                row["error"] = f"{type(err).__name__}: {err}"
                failed.append(f"{name}/{dataset}")
            rows.append(row)
    print_table(rows, skipped_models, skipped_data, mode)
    save_result(
        ("likelihood" if args.quick else "likelihood_full") + (f"_{args.steps}steps" if args.steps else ""),
        {
            "mode": mode,
            "budgets": {k: dict(b, **({"steps": args.steps} if args.steps else {})) for k, b in BUDGETS[mode].items()},
            "optim": {"lr": 2e-3, "schedule": "warm-up 5% + cosine", "ema_decay": 0.995, "grad_clip": 1.0},
            "threads": args.threads,
            "registered_models": registered,
            "skipped_models": skipped_models,
            "skipped_data": skipped_data,
            "papers": PAPERS,
            "results": rows,
        },
        figure(rows, mode),
    )
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def ours(row: dict) -> str:
    if "error" in row:
        return "error"
    if row["dataset"] == "binarized_mnist":
        return f"{row['test_nll_nats']:.2f} nats"
    return f"{row['test_bits_per_dim']:.3f} bits/dim"


def published(row: dict) -> str:
    key = "cifar10" if row["dataset"] in ("cifar10", "photos") else row["dataset"]
    entries = PAPERS.get(row["model"], {}).get(key, [])
    text = "; ".join(f"{v:g} ({src})" for src, v in entries) or "-"
    if row["dataset"] == "photos" and entries:
        text = "CIFAR-10: " + text
    return text


def print_table(rows: list[dict], skipped_models: dict, skipped_data: dict, mode: str) -> None:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"\nlikelihood ({mode}; {device}, torch {torch.__version__}, {torch.get_num_threads()} threads available)")
    header = (
        f"{'model':16s} {'data':16s} {'params':>7s} {'budget':>14s} {'wall s':>7s} {'test':>7s} {'ours':>17s}  papers"
    )
    print(header)
    for r in rows:
        budget = f"{r['steps']}x{r['batch_size']}"
        wall = f"{r.get('train_time_s', float('nan')):.0f}"
        test = str(r.get("test_images", "-"))
        params = str(r.get("parameters", "-"))
        print(f"{r['model']:16s} {r['dataset']:16s} {params:>7s} {budget:>14s} {wall:>7s} {test:>7s} {ours(r):>17s}  "
              f"{published(r)}")  # fmt: skip
        if "error" in r:
            print(f"    error: {r['error']}")
    for name, why in skipped_models.items():
        print(f"{name:16s} skipped: {why}")
    for name, why in skipped_data.items():
        print(f"data {name}: {why}")


def figure(rows: list[dict], mode: str):
    data_names = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(data_names)), figsize=(5.5 * max(1, len(data_names)), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], data_names, strict=False):
        for r in (r for r in rows if r["dataset"] == dataset and "train_curve" in r):
            steps, bpd = zip(*r["train_curve"], strict=True)
            label = f"{r['model']}: test {ours(r)} ({r['train_time_s']:.0f} s)"
            ax.plot(steps, bpd, label=label)
        ax.set_title(f"{dataset} ({mode} budget), training bits/dim")
        ax.set_xlabel("step (batch 16)")
        ax.set_ylabel("train bits/dim")
        ax.set_ylim(top=min(ax.get_ylim()[1], 1.0 if dataset == "binarized_mnist" else 8.5))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
