"""Lossless compression of the 24 Kodak images: pixelmodels' codec against the classical lossless codecs.

Codecs: PNG (Pillow, optimize), WebP lossless (Pillow, method 6, quality 100), and through ``imagecodecs``
(``pip install pixelmodels[bench]``) JPEG 2000 lossless (reversible), JPEG-LS (lossless) and JPEG XL lossless at
effort 7 and 9. Ours: ``pixelmodels.codec`` with a shipped model (default ``photo-gated``) or ``--model RUN``,
exactly what ``pixelmodels compress`` writes. Reported per codec: bits per sub-pixel (file bits / (H W 3)) over
all 24 images, encode and decode seconds per image (medians), and the round-trip check (decoded == input).

    python -m benchmarks.codec_photos --codecs classical       # seconds
    python -m benchmarks.codec_photos --codecs ours --decode 3 # encode all 24, decode kodim01..03 (slow)
    python -m benchmarks.codec_photos --codecs tiling --model RUN --images 6  # what tiling costs (float model)

The tiling part measures what cutting an image into independent tiles costs: a size-agnostic float model (the
convolutional Gated PixelCNN the photograph model is trained from) scores the same images whole (the model
rebuilt at the image's size with the same weights; exact ``log_prob``) and cut into tiles of several sizes (each
tile on its own, as the codec codes it).

Ours is timed at 1 torch thread; decoding is slow, so ``--decode N`` decodes the first N images only (the rate
is the size of all 24 encoded files either way). Results: ``benchmarks/results/codec_photos_<part>.json`` and one
PNG bar chart of every part found. Kodak is test-only: nothing here trains or tunes on it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import RESULTS, save_result

KODAK = Path(os.environ.get("PIXELMODELS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "kodak"


def kodak() -> list[tuple[str, np.ndarray]]:
    paths = sorted(KODAK.glob("kodim*.png"))
    if len(paths) != 24:
        raise SystemExit(f"expected the 24 Kodak images in {KODAK}, found {len(paths)}")
    return [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def _pillow(fmt: str, **options):
    def encode(img: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **options)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    return encode, decode


def classical_codecs() -> dict:
    import imagecodecs as ic

    return {
        "PNG": _pillow("PNG", optimize=True),
        "WebP lossless": _pillow("WEBP", lossless=True, quality=100, method=6),
        "JPEG 2000": (lambda x: ic.jpeg2k_encode(x, reversible=True, numthreads=1), ic.jpeg2k_decode),
        "JPEG-LS": (lambda x: ic.jpegls_encode(x, level=0), ic.jpegls_decode),
        "JPEG XL e7": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=7, numthreads=1), ic.jpegxl_decode),
        "JPEG XL e9": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=9, numthreads=1), ic.jpegxl_decode),
    }


def our_codec(model_name: str):
    import torch

    from pixelmodels import codec
    from pixelmodels.cli_codec import load_model

    torch.set_num_threads(1)
    model = load_model(model_name)

    def encode(img: np.ndarray) -> bytes:
        return codec.compress(model, img.transpose(2, 0, 1))

    def decode(data: bytes) -> np.ndarray:
        return codec.decompress(model, data)[0].numpy().transpose(1, 2, 0)

    return {f"pixelmodels ({model_name})": (encode, decode)}


def tiling_cost(run: str, images: list, sizes=(32, 64, 128)) -> dict:
    """Bits per sub-pixel of ``images`` scored whole and as independent tiles of each size (exact log_prob)."""
    import math

    import torch

    from pixelmodels import build
    from pixelmodels.codec import tiles
    from pixelmodels.training import load_checkpoint

    torch.set_num_threads(1)
    trained = load_checkpoint(run)
    config = {k: v for k, v in trained.config.items() if k not in ("name", "image_shape")}
    rows = {"whole": [], **{f"tiles {s}x{s}": [] for s in sizes}}
    for stem, img in images:
        x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.int64))  # (3, H, W)
        for label, shape in [("whole", x.shape)] + [(f"tiles {s}x{s}", (3, s, s)) for s in sizes]:
            model = build(trained.model_name, image_shape=tuple(shape), **config)
            model.load_state_dict(trained.state_dict())
            batch = torch.from_numpy(tiles.cut([x.numpy()], tuple(shape)))  # Kodak sizes: no padding at these
            with torch.no_grad():
                nats = -sum(model.eval().log_prob(b).sum().item() for b in batch.split(64))
            rows[label].append(nats / math.log(2) / x.numel())
        print(stem, {k: round(v[-1], 4) for k, v in rows.items()})
    out = {k: {"bits_per_subpixel": float(np.mean(v)), "per_image": v} for k, v in rows.items()}
    for k in out:
        out[k]["over_whole_percent"] = 100 * (out[k]["bits_per_subpixel"] / out["whole"]["bits_per_subpixel"] - 1)
    return out


def measure(codecs: dict, images: list, decode_first: int | None) -> dict:
    rows = {}
    subpixels = sum(img.size for _, img in images)  # the images measured (all 24 unless --images)
    for name, (encode, decode) in codecs.items():
        sizes, enc_s, dec_s, exact = {}, [], [], True
        for i, (stem, img) in enumerate(images):
            start = time.perf_counter()
            data = encode(img)
            enc_s.append(time.perf_counter() - start)
            sizes[stem] = len(data)
            if decode_first is None or i < decode_first:
                start = time.perf_counter()
                back = decode(data)
                dec_s.append(time.perf_counter() - start)
                exact &= bool(np.array_equal(back, img))
            print(f"{name:28s} {stem}: {8 * len(data) / img.size:.4f} bits/sub-pixel, encode {enc_s[-1]:.2f} s")
        rows[name] = {
            "bits_per_subpixel": 8 * sum(sizes.values()) / subpixels,
            "bytes": sizes,
            "encode_s_median": statistics.median(enc_s),
            "decode_s_median": statistics.median(dec_s),
            "decoded_images": len(dec_s),
            "round_trip_exact": exact,
        }
    return rows


def plot(figure_rows: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(figure_rows, key=lambda n: -figure_rows[n]["bits_per_subpixel"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
    values = [figure_rows[n]["bits_per_subpixel"] for n in names]
    ax.barh(names, values, color=["C3" if n.startswith("pixelmodels") else "C0" for n in names])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center")
    ax.set_xlabel("bits per sub-pixel on the 24 Kodak images (lower is better)")
    ax.set_xlim(0, max(values) * 1.15)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", choices=["classical", "ours", "tiling"], default="classical")
    parser.add_argument("--images", type=int, default=24, help="the first N Kodak images (default all 24)")
    parser.add_argument("--model", default="photo-gated", help="shipped model name or run directory (ours)")
    parser.add_argument("--decode", type=int, default=None, help="decode only the first N images (default all)")
    args = parser.parse_args(argv)
    images = kodak()[: args.images]
    load_before = os.getloadavg()
    if args.codecs == "tiling":
        result = {"part": "tiling", "model": args.model, "images": [s for s, _ in images]}
        result["rows"] = tiling_cost(args.model, images)
        save_result("codec_photos_tiling", {**result, "load_average_before_after": [load_before, os.getloadavg()]})
        for name, row in result["rows"].items():
            print(f"{name:14s} {row['bits_per_subpixel']:.4f} bits/sub-pixel ({row['over_whole_percent']:+.2f}%)")
        return
    codecs = classical_codecs() if args.codecs == "classical" else our_codec(args.model)
    rows = measure(codecs, images, args.decode)
    result = {"part": args.codecs, "load_average_before_after": [load_before, os.getloadavg()], "codecs": rows}
    result["images"] = [s for s, _ in images]
    if args.codecs == "ours":
        result["model"] = args.model
    classical = RESULTS / "codec_photos_classical.json"
    if args.codecs == "ours" and classical.is_file():  # the classical codecs on the same images, from their bytes
        stems, subpixels = [s for s, _ in images], sum(img.size for _, img in images)
        result["classical_same_images"] = {
            name: 8 * sum(row["bytes"][s] for s in stems) / subpixels
            for name, row in json.loads(classical.read_text())["codecs"].items()
        }
    every = dict(rows)
    for part in ("classical", "ours"):
        path = RESULTS / f"codec_photos_{part}.json"
        if part != args.codecs and path.is_file():
            every.update(json.loads(path.read_text())["codecs"])
    save_result(f"codec_photos_{args.codecs}", result, plot(every))
    for name, row in rows.items():
        print(f"{name:28s} {row['bits_per_subpixel']:.4f} bits/sub-pixel, encode {row['encode_s_median']:.3f} s, "
              f"decode {row['decode_s_median']:.3f} s per image, exact {row['round_trip_exact']}")  # fmt: skip


if __name__ == "__main__":
    main()
