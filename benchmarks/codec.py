"""Lossless compression with a trained PixelCNN vs PNG and WebP, and the coder's overhead over the model.

For each data set a small PixelCNN is trained briefly (a plain Adam loop with a wall-clock budget), then a
fixed random test subset is compressed with ``pixelmodels.codec`` and decoded back (checked exact). Reported:
the model's exact bits/dim on those images, the bits/dim of the actual file (and of its payload alone, without
the fixed header), PNG (Pillow, optimize=True) and WebP lossless (Pillow, method 6) on the same images, each
image as its own file and all images tiled into one sheet, and encode/decode throughput (images/s).

    python -m benchmarks.codec            # binarized MNIST, MNIST (8-bit), RGB photo patches
    python -m benchmarks.codec --quick    # a smoke run (seconds of training, a few images)

Data: binarized MNIST and MNIST from $PIXELMODELS_DATA (default ../shared/data); RGB 8x8 patches cut from the
two photographs shipped with scikit-learn (train: top 3/4 of each photo, test: bottom 1/4), standing in for
CIFAR-10, which is not available here.
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import pixelmodels
from benchmarks.common import save_result
from pixelmodels import codec, imagefiles

DATA = Path(os.environ.get("PIXELMODELS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# ----- data ---------------------------------------------------------------------------------------------------
def binarized_mnist(split: str) -> np.ndarray:
    with gzip.open(DATA / "binarized_mnist" / f"binarized_mnist_{split}.amat.gz", "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    return (raw.reshape(-1, 1568)[:, ::2] - ord("0")).reshape(-1, 1, 28, 28).astype(np.int64)  # "0 1 ... 0\n"


def mnist(split: str) -> np.ndarray:
    with gzip.open(DATA / "mnist" / f"{split}-images-idx3-ubyte.gz", "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return raw.reshape(-1, 1, 28, 28).astype(np.int64)


def photo_patches(split: str, count: int, size: int = 8, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed + (split == "test"))
    patches = []
    for photo in load_sample_images().images:  # (427, 640, 3) uint8, two photos
        h, w, _ = photo.shape
        lo, hi = (0, 3 * h // 4 - size) if split == "train" else (3 * h // 4, h - size)
        for _ in range(count // 2):
            y, x = rng.integers(lo, hi + 1), rng.integers(0, w - size + 1)
            patches.append(photo[y : y + size, x : x + size].transpose(2, 0, 1))
    return np.stack(patches).astype(np.int64)  # (count, 3, size, size)


# ----- baselines ----------------------------------------------------------------------------------------------
def to_pil(img: np.ndarray, levels: int) -> Image.Image:
    """(C, H, W) levels -> a Pillow image; two levels become a 1-bit image (PNG then stores 1 bit per pixel)."""
    pixels = imagefiles.pixels_from_levels(img, levels).transpose(1, 2, 0)  # (H, W, C)
    if pixels.shape[2] == 1:
        pil = Image.fromarray(pixels[:, :, 0])
        return pil.convert("1") if levels == 2 else pil
    return Image.fromarray(pixels)


def encoded_size(pil: Image.Image, fmt: str) -> int:
    buffer = io.BytesIO()
    if fmt == "PNG":
        pil.save(buffer, format="PNG", optimize=True)
    else:
        pil.save(buffer, format="WEBP", lossless=True, quality=100, method=6)
    return buffer.tell()


def sheet(images: np.ndarray) -> np.ndarray:
    """Tile (N, C, H, W) into one (C, rows*H, cols*W) image; N must be a perfect square."""
    n, c, h, w = images.shape
    side = math.isqrt(n)
    assert side * side == n, "use a square number of test images"
    return images.reshape(side, side, c, h, w).transpose(2, 0, 3, 1, 4).reshape(c, side * h, side * w)


# ----- training and measuring ---------------------------------------------------------------------------------
def train(model, data: torch.Tensor, seconds: float, batch: int = 32, lr: float = 3e-3, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start, steps, recent = time.perf_counter(), 0, []
    while time.perf_counter() - start < seconds:
        x = data[torch.randint(0, len(data), (batch,), generator=gen)]
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
        recent = (recent + [loss.item()])[-20:]
    model.eval()
    return {
        "steps": steps,
        "seconds": time.perf_counter() - start,
        "train_bpd_last20": np.mean(recent) / (model.num_dims * math.log(2)),
    }


def measure(name: str, model, test: torch.Tensor, batch_size: int, whole_images: int) -> dict:
    n, dims = len(test), test[0].numel()
    with torch.no_grad():
        model_bits = -model.log_prob(test).sum().item() / math.log(2)
    start = time.perf_counter()
    data = codec.compress(model, test, batch_size=batch_size)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    restored = codec.decompress(model, data)
    decode_s = time.perf_counter() - start
    if not torch.equal(restored, test):
        raise SystemExit(f"{name}: round trip is not exact")
    header = codec.read_header(data)
    payload_bits = 32 * header.payload_words
    arr = test.numpy()
    levels = model.num_levels
    result = {
        "images": n,
        "image_shape": list(model.image_shape),
        "num_levels": levels,
        "exact_round_trip": True,
        "model_bpd": model_bits / (n * dims),
        "file_bytes": len(data),
        "header_bytes": header.size,
        "file_bpd": 8 * len(data) / (n * dims),
        "payload_bpd": payload_bits / (n * dims),
        "payload_overhead_pct": 100 * (payload_bits / model_bits - 1),
        "file_overhead_pct": 100 * (8 * len(data) / model_bits - 1),
        "png_per_image_bpd": 8 * sum(encoded_size(to_pil(a, levels), "PNG") for a in arr) / (n * dims),
        "webp_per_image_bpd": 8 * sum(encoded_size(to_pil(a, levels), "WEBP") for a in arr) / (n * dims),
        "png_sheet_bpd": 8 * encoded_size(to_pil(sheet(arr), levels), "PNG") / (n * dims),
        "webp_sheet_bpd": 8 * encoded_size(to_pil(sheet(arr), levels), "WEBP") / (n * dims),
        "encode_images_per_s": n / encode_s,
        "decode_images_per_s": n / decode_s,
        "method": "window" if header.method == codec.WINDOW else "whole",
        "window_radius": header.radius,
        "batch_size": batch_size,
    }
    if whole_images:  # every network method the model supports, on a few images, for the speed ratios
        result["methods"] = method_speeds(model, test[:whole_images], batch_size)
    print(
        f"{name}: model {result['model_bpd']:.4f} bpd, file {result['file_bpd']:.4f} (payload "
        f"{result['payload_bpd']:.4f}, +{result['payload_overhead_pct']:.3f}%), PNG {result['png_per_image_bpd']:.3f}"
        f"/{result['png_sheet_bpd']:.3f}, WebP {result['webp_per_image_bpd']:.3f}/{result['webp_sheet_bpd']:.3f}, "
        f"encode {result['encode_images_per_s']:.2f} img/s, decode {result['decode_images_per_s']:.2f} img/s",
        flush=True,
    )
    return result


def method_speeds(model, images: torch.Tensor, batch_size: int) -> dict:
    """Encode images/s with each network method the model supports (each checked to decode exactly)."""
    methods = ["whole"] + ["window"] * hasattr(model, "receptive_radius") + ["fast"] * model.supports_fast_sampling
    speeds = {}
    for method in methods:
        start = time.perf_counter()
        data = codec.compress(model, images, batch_size=batch_size, method=method)
        seconds = time.perf_counter() - start
        if not torch.equal(codec.decompress(model, data), images):
            raise SystemExit(f"method {method}: round trip is not exact")
        speeds[method] = {"encode_images_per_s": len(images) / seconds, "bpd": 8 * len(data) / images.numel()}
    for method in speeds:
        speeds[method]["speedup_over_whole"] = (
            speeds[method]["encode_images_per_s"] / speeds["whole"]["encode_images_per_s"]
        )
    return {"images": len(images), **speeds}


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    series = [
        ("model (exact NLL)", "model_bpd"),
        ("pixelmodels codec file", "file_bpd"),
        ("PNG, per image", "png_per_image_bpd"),
        ("PNG, one sheet", "png_sheet_bpd"),
        ("WebP lossless, per image", "webp_per_image_bpd"),
        ("WebP lossless, one sheet", "webp_sheet_bpd"),
    ]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / len(series)
    for i, (label, key) in enumerate(series):
        xs = np.arange(len(names)) + (i - len(series) / 2 + 0.5) * width
        ax.bar(xs, [results[n][key] for n in names], width, label=label)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("bits per dimension (lower is better)")
    ax.set_title("Lossless sizes on the same test images")
    ax.legend(fontsize=8)
    xs = np.arange(len(names))
    ax2.bar(xs - 0.2, [results[n]["encode_images_per_s"] for n in names], 0.4, label="encode")
    ax2.bar(xs + 0.2, [results[n]["decode_images_per_s"] for n in names], 0.4, label="decode")
    ax2.set_xticks(xs, names, rotation=15)
    ax2.set_ylabel("images / s")
    ax2.set_title("Codec throughput (2-core CPU)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds of training and 4 test images")
    parser.add_argument("--train-seconds", type=float, default=None, help="training budget per data set")
    args = parser.parse_args()
    seconds = args.train_seconds or (5 if args.quick else 240)
    # One thread: on this shared 2-core machine two threads per process were 20-40x slower on small tensors
    # (oversubscription); the codec itself always runs on one CPU thread (see pixelmodels.codec).
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = {
        "binarized MNIST": (lambda: (binarized_mnist("train"), binarized_mnist("test")), (1, 28, 28), 2, 64),
        "MNIST (8-bit)": (lambda: (mnist("train"), mnist("t10k")), (1, 28, 28), 256, 36),
        "RGB photo patches 8x8": (
            lambda: (photo_patches("train", 20000), photo_patches("test", 2000)),
            (3, 8, 8),
            256,
            64,
        ),
    }
    results = {}
    for name, (load, shape, levels, count) in cases.items():
        count = 4 if args.quick else count
        train_x, test_x = (torch.from_numpy(a) for a in load())
        test_x = test_x[torch.randperm(len(test_x), generator=torch.Generator().manual_seed(1))[:count]]
        torch.manual_seed(0)
        hidden = 8 if args.quick else 16
        model = pixelmodels.build(
            "pixelcnn", image_shape=shape, num_levels=levels, hidden_channels=hidden, num_layers=3
        )
        info = train(model, train_x, seconds)
        print(f"{name}: trained {info['steps']} steps in {info['seconds']:.0f} s", flush=True)
        results[name] = {"model": model.config, "training": info}
        results[name].update(measure(name, model, test_x, batch_size=count, whole_images=0 if args.quick else 4))
    save_result("codec" + ("_quick" if args.quick else ""), {"results": results}, plot(results))


if __name__ == "__main__":
    main()
