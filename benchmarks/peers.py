"""Side by side with pytorch-generative's PixelCNN / Gated PixelCNN: ``python -m benchmarks.peers [--quick]``.

pytorch-generative (EugenHotaj, MIT) is imported at run time from ``../shared/peers/pytorch-generative`` (or
``--peers-dir`` / ``$PIXELMODELS_PEERS``), never copied and never a dependency; the benchmark skips with the
reason when it is absent. Its package ``__init__`` imports torchvision (and its trainer imports TensorBoard),
which do not import beside the CPU torch used here, so placeholder modules stand in for them in ``sys.modules``;
only its model classes are used.

Each pair is built at the same size (``PAIRS``: residual / gated channels, number of layers, 1x1 head width),
trained on the same binarized MNIST batches (same indices, same order), with the same optimizer (Adam, lr 1e-3,
no clipping, no EMA) for the same number of steps, in one loop that alternates one step of each, so both see the
same machine load. Both losses are the negative log-likelihood in nats per image, averaged over the batch. The
loop is a plain one for both (this compares the models, not the trainers). Reported: training images/s (median
step time), sampling images/s (ours naive and, where the model has one, the cached fast sampler; theirs naive,
one full forward pass per pixel), and the test NLL each reaches (quick: an evenly spaced 300-image subset of the
test split; full: all 10,000). Ratios are ours / theirs.

Remaining differences, by design of each library: our PixelCNN masks channels within a pixel (R -> G -> B), theirs
does not; with one channel (binarized MNIST) this makes no difference. Ours outputs a 2-way softmax per pixel
(categorical, K = 2), theirs one Bernoulli logit: the same family of distributions with one redundant parameter.
Ours scales inputs to [-1, 1], theirs feeds 0/1. Their ``PixelCNN.forward`` adds each residual block's output to
its input a second time (``x = x + layer(x)`` around a block that already returns ``x + f(x)``). Their Gated
PixelCNN's first layer has a 7x7 receptive field and its other layers 3x3; ours uses one kernel size (3 here) for
every layer, so ours has ``n_gated + 1`` layers to match their input layer plus ``n_gated``.

Writes ``benchmarks/results/peers.json`` and ``.png`` (full mode: ``peers_full.*``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import pixelmodels  # noqa: E402
from benchmarks.common import median_time, save_result  # noqa: E402
from pixelmodels.data import dataset_info, load_dataset  # noqa: E402
from pixelmodels.evaluate import dataset_nll  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The project's read-only shared folder: ../shared beside the repository (or beside a worktree's parent).
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared").is_dir()), ROOT.parent / "shared")

# Same size on both sides. h = 16 is the PixelRNN paper's MNIST width; 32-wide 1x1 head as pytorch-generative's.
PAIRS: dict[str, dict] = {
    "pixelcnn": {
        "ours": {"hidden_channels": 16, "num_layers": 5, "output_channels": 32},
        "theirs": ("PixelCNN", {"in_channels": 1, "out_channels": 1, "n_residual": 5, "residual_channels": 16,
                                "head_channels": 32}),
    },
    "gated_pixelcnn": {
        "ours": {"hidden_channels": 16, "num_layers": 5, "kernel_size": 3, "output_channels": 32},
        "theirs": ("GatedPixelCNN", {"in_channels": 1, "out_channels": 1, "n_gated": 4, "gated_channels": 16,
                                     "head_channels": 32}),
    },
}  # fmt: skip

SETTINGS = {
    "quick": {"steps": 60, "batch_size": 16, "max_test": 300, "sample_n": 4, "sample_repeats": 1},
    "full": {"steps": 2000, "batch_size": 16, "max_test": None, "sample_n": 16, "sample_repeats": 3},
}
LR = 1e-3


class PeerMissing(Exception):
    """pytorch-generative is not available; the message says why."""


def _placeholder(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__pixelmodels_placeholder__ = True

    def getattr_(attr: str):  # any class it names at import time (e.g. VisionDataset): an empty class
        if attr.startswith("_"):
            raise AttributeError(attr)
        return type(attr, (), {})

    module.__getattr__ = getattr_
    return module


def import_peer(peers_dir: Path) -> types.ModuleType:
    """Import ``pytorch_generative`` from ``peers_dir/pytorch-generative`` with placeholder torchvision modules."""
    root = peers_dir / "pytorch-generative"
    if not (root / "pytorch_generative" / "__init__.py").is_file():
        raise PeerMissing(f"pytorch-generative not found at {root} (pass --peers-dir or set PIXELMODELS_PEERS)")
    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.datasets.utils",
                 "torchvision.datasets.vision"):  # fmt: skip
        module = sys.modules.setdefault(name, _placeholder(name))
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)  # `from torchvision.datasets import vision` finds it
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:  # its trainer module imports it; TensorBoard is not installed here
        sys.modules["torch.utils.tensorboard"] = _placeholder("torch.utils.tensorboard")
    sys.path.insert(0, str(root))
    try:
        import pytorch_generative
    except Exception as err:
        raise PeerMissing(f"pytorch-generative at {root} does not import: {type(err).__name__}: {err}") from err
    finally:
        sys.path.remove(str(root))
    return pytorch_generative


def theirs_nll(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Their loss (``reproduce`` in pixel_cnn.py): Bernoulli NLL from logits, summed per image, in nats. (B,)"""
    x = x.float()  # (B, 1, H, W) in {0, 1}
    logits = model(x)  # (B, 1, H, W)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


@torch.no_grad()
def theirs_test_nll(model: torch.nn.Module, images: torch.Tensor, batch: int = 100) -> float:
    model.eval()
    total = sum(theirs_nll(model, images[i : i + batch]).double().sum().item() for i in range(0, len(images), batch))
    model.train()
    return total / len(images)


def run_pair(name: str, pair: dict, pg, train_x: torch.Tensor, test_x: torch.Tensor, s: dict) -> dict:
    torch.manual_seed(0)
    ours = pixelmodels.build(name, image_shape=(1, 28, 28), num_levels=2, **pair["ours"])
    cls_name, their_kwargs = pair["theirs"]
    torch.manual_seed(0)
    theirs = getattr(pg.models, cls_name)(**their_kwargs)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=LR)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=LR)
    g = torch.Generator().manual_seed(0)
    times = {"ours": [], "theirs": []}
    losses = {"ours": [], "theirs": []}

    def step_ours(x):
        loss = -ours.log_prob(x.long()).mean()  # nats per image
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()
        return loss.item()

    def step_theirs(x):
        loss = theirs_nll(theirs, x).mean()  # nats per image
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        opt_theirs.step()
        return loss.item()

    for step in range(s["steps"]):
        x = train_x[torch.randint(len(train_x), (s["batch_size"],), generator=g)]  # (B, 1, 28, 28) uint8
        order = [("ours", step_ours), ("theirs", step_theirs)]
        for who, fn in order if step % 2 == 0 else order[::-1]:  # alternate who goes first
            start = time.perf_counter()
            losses[who].append(fn(x))
            times[who].append(time.perf_counter() - start)
    warm = times["ours"][2:] or times["ours"], times["theirs"][2:] or times["theirs"]  # first steps: allocator
    train_ips = {who: s["batch_size"] / statistics.median(t) for who, t in zip(("ours", "theirs"), warm, strict=True)}

    ours_test = dataset_nll(ours, test_x, batch_size=100).nll_nats
    their_test = theirs_test_nll(theirs, test_x)

    n, reps = s["sample_n"], s["sample_repeats"]
    ours.eval()
    theirs.eval()
    sample_ips = {
        "ours_naive": n / median_time(lambda: ours.sample(n, method="naive"), repeats=reps, warmup=0),
        "theirs_naive": n / median_time(lambda: theirs.sample(n_samples=n), repeats=reps, warmup=0),
    }
    if ours.supports_fast_sampling:
        sample_ips["ours_fast"] = n / median_time(lambda: ours.sample(n, method="fast"), repeats=reps, warmup=0)
    dims = 28 * 28
    result = {
        "ours_hparams": pair["ours"],
        "theirs_class": f"pytorch_generative.models.{cls_name}",
        "theirs_kwargs": their_kwargs,
        "parameters": {
            "ours": sum(p.numel() for p in ours.parameters()),
            "theirs": sum(p.numel() for p in theirs.parameters()),
        },
        "train_images_per_s": {k: round(v, 1) for k, v in train_ips.items()},
        "train_ratio_ours_over_theirs": round(train_ips["ours"] / train_ips["theirs"], 3),
        "sample_images_per_s": {k: round(v, 4) for k, v in sample_ips.items()},
        "sample_ratio_naive_ours_over_theirs": round(sample_ips["ours_naive"] / sample_ips["theirs_naive"], 3),
        "test_nll_nats": {"ours": round(ours_test, 3), "theirs": round(their_test, 3)},
        "test_bits_per_dim": {
            "ours": round(ours_test / dims / math.log(2), 4),
            "theirs": round(their_test / dims / math.log(2), 4),
        },
        "train_loss_nats": {k: [round(v, 2) for v in vals] for k, vals in losses.items()},
    }
    if "ours_fast" in sample_ips:
        result["sample_ratio_fast_ours_over_theirs"] = round(sample_ips["ours_fast"] / sample_ips["theirs_naive"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 steps, 300 test images, 4 samples (minutes)")
    parser.add_argument("--peers-dir", type=Path, help="folder holding pytorch-generative/ (default ../shared/peers)")
    parser.add_argument("--data-dir", help="data directory with binarized_mnist (default ../shared/data)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    peers_dir = args.peers_dir or Path(os.environ.get("PIXELMODELS_PEERS", SHARED / "peers"))
    data_dir = Path(args.data_dir or os.environ.get("PIXELMODELS_DATA") or os.environ.get("PIXELMODELS_TEST_DATA")
                    or SHARED / "data")  # fmt: skip
    try:
        pg = import_peer(peers_dir)
    except PeerMissing as err:
        print(f"skipped: {err}")
        return 0
    if not dataset_info("binarized_mnist", data_dir)["files_present"]:
        print(f"skipped: binarized_mnist files not found under {data_dir}; pass --data-dir")
        return 0
    train_x = load_dataset("binarized_mnist", "train", data_dir=data_dir).images  # (50000, 1, 28, 28)
    test_x = load_dataset("binarized_mnist", "test", data_dir=data_dir).images  # (10000, 1, 28, 28), class-sorted
    if s["max_test"] is not None:
        test_x = test_x[torch.linspace(0, len(test_x) - 1, s["max_test"]).round().long()]
    registered = pixelmodels.available_models()
    results, skipped = {}, {}
    for name, pair in PAIRS.items():
        if name not in registered:
            skipped[name] = "not registered in pixelmodels yet"
            print(f"{name}: skipped ({skipped[name]})")
            continue
        print(f"-- {name}: {s['steps']} steps x batch {s['batch_size']}, each side", flush=True)
        results[name] = r = run_pair(name, pair, pg, train_x, test_x, s)
        print(f"   parameters ours {r['parameters']['ours']}, theirs {r['parameters']['theirs']}")
        print(f"   train images/s ours {r['train_images_per_s']['ours']}, theirs {r['train_images_per_s']['theirs']}"
              f" (ratio {r['train_ratio_ours_over_theirs']})")  # fmt: skip
        print(f"   sample images/s {r['sample_images_per_s']} (naive ratio {r['sample_ratio_naive_ours_over_theirs']}"
              f", fast ratio {r.get('sample_ratio_fast_ours_over_theirs', '-')})")  # fmt: skip
        print(f"   test NLL ours {r['test_nll_nats']['ours']} nats, theirs {r['test_nll_nats']['theirs']} nats "
              f"({len(test_x)} test images)")  # fmt: skip
    save_result(
        "peers" if args.quick else "peers_full",
        {
            "mode": mode,
            "settings": s,
            "optimizer": f"Adam lr {LR}, no clipping, no EMA, same batches for both",
            "peer": "EugenHotaj/pytorch-generative d1f0a5ce45195fed3e2787be86ad87c7c8229481",
            "test_images": len(test_x),
            "skipped": skipped,
            "results": results,
        },
        figure(results, mode, s) if results else None,
    )
    return 0


def figure(results: dict, mode: str, s: dict):
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for name, r in results.items():
        for who, style in (("ours", "-"), ("theirs", "--")):
            loss = torch.tensor(r["train_loss_nats"][who])
            k = max(1, len(loss) // 20)
            smooth = loss.unfold(0, k, 1).mean(1) if len(loss) >= k else loss
            axes[0].plot(
                range(k, k + len(smooth)), smooth, style, label=f"{name} {who}: test {r['test_nll_nats'][who]}"
            )
    axes[0].set(title=f"train NLL (nats/image), {mode}: {s['steps']} steps x {s['batch_size']}", xlabel="step")
    axes[0].legend(fontsize=7)
    names = list(results)
    width = 0.35
    xs = range(len(names))
    axes[1].bar([x - width / 2 for x in xs], [results[n]["train_images_per_s"]["ours"] for n in names], width,
                label="pixelmodels")  # fmt: skip
    axes[1].bar([x + width / 2 for x in xs], [results[n]["train_images_per_s"]["theirs"] for n in names], width,
                label="pytorch-generative")  # fmt: skip
    axes[1].set_xticks(list(xs), names)
    axes[1].set(title="training images/s (median step)", ylabel="images/s")
    axes[1].legend(fontsize=7)
    kinds = ["ours_naive", "ours_fast", "theirs_naive"]
    w = 0.25
    for i, kind in enumerate(kinds):
        axes[2].bar([x + (i - 1) * w for x in xs], [results[n]["sample_images_per_s"].get(kind, 0) for n in names], w,
                    label=kind)  # fmt: skip
    axes[2].set_xticks(list(xs), names)
    axes[2].set_yscale("log")
    axes[2].set(title="sampling images/s (28x28)", ylabel="images/s (log)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
