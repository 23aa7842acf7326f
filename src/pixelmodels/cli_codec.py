"""``pixelmodels compress`` and ``decompress`` (docs/codec.md): lossless image files with a shipped or trained model.

    pixelmodels compress photo.png photo.pmz                 # the shipped photograph model
    pixelmodels decompress photo.pmz restored.png            # finds the model by the fingerprint in the file
    pixelmodels compress --model runs/mnist digit.png d.pmz  # a run (its weights are pinned, see below)

Nothing is lost or overwritten: an output that exists, is an image, or lacks ``.pmz`` is refused unless
``--force``; outputs are written to a temporary file and renamed. ``decompress`` writes lossless PNG (or a
``.npy`` of levels) only. A file made from a run pins the exact weights it was made with: a frozen copy in
``RUN/pinned/<fingerprint>.{json,safetensors}``, which training never touches (it only rewrites
``checkpoints/``), so the file stays decodable after more training; ``decompress --model RUN`` finds it there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "photo-gated"
LOSSLESS_OUT = (".png", ".npy")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2", ".jxl"}


# ----- models: shipped by name, a run (pinned weights), or an exported folder ---------------------------------
def load_model(spec: str | None, checkpoint: str = "best", weights: str = "ema", device: str = "cpu"):
    """``--model``: None (the shipped photograph model), a shipped name, a run directory / checkpoint file, or a
    folder in the ``pixelmodels.pretrained`` layout."""
    from pixelmodels import pretrained

    if spec is None:
        if DEFAULT_MODEL not in pretrained.available():
            raise FileNotFoundError(
                f"this installation ships no photograph model ({DEFAULT_MODEL!r}) yet: pass --model RUN_OR_NAME "
                f"(shipped: {', '.join(pretrained.available()) or 'none'})"
            )
        spec = DEFAULT_MODEL
    path = Path(spec)
    if path.exists():
        if pretrained.is_model_folder(path):
            return pretrained.load_folder(path, device)
        from pixelmodels.training import load_checkpoint

        return load_checkpoint(path, checkpoint, weights, device)
    if spec in pretrained.available():
        return pretrained.load(spec, device)
    shipped = ", ".join(pretrained.available()) or "none"
    raise FileNotFoundError(f"--model {spec}: no such run directory or shipped model (shipped: {shipped})")


def pin_weights(run: Path, model) -> Path:
    """Keep a frozen copy of ``model`` in ``RUN/pinned/`` under its fingerprint (once); returns the JSON path."""
    import safetensors.torch

    from pixelmodels import codec
    from pixelmodels.training.checkpoint import atomic_write_bytes, atomic_write_text

    run = run.parent.parent if run.is_file() else run  # runs/x/checkpoints/best.json -> runs/x
    fp = codec.fingerprint(model)
    folder = run / "pinned"
    meta_path = folder / f"{fp}.json"
    if not meta_path.is_file():
        folder.mkdir(exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write_bytes(folder / f"{fp}.safetensors", safetensors.torch.save(state))
        atomic_write_text(meta_path, json.dumps({"fingerprint": fp, "model": model.config}, indent=1))
    return meta_path


def _pinned(run: Path, fingerprint: str, device: str):
    import safetensors.torch

    from pixelmodels.registry import build

    run = run.parent.parent if run.is_file() else run
    meta_path = run / "pinned" / f"{fingerprint}.json"
    if not meta_path.is_file():
        return None
    config = dict(json.loads(meta_path.read_text())["model"])
    model = build(config.pop("name"), **config)
    model.load_state_dict(safetensors.torch.load(meta_path.with_suffix(".safetensors").read_bytes()))
    return model.eval().to(device)


def model_for_file(header, args):
    """The model a file needs: ``--model`` (a run's pinned weights first), else the shipped model with the
    file's fingerprint; an error names the model when it cannot be found."""
    from pixelmodels import pretrained

    if args.model is not None:
        path = Path(args.model)
        if path.exists() and not pretrained.is_model_folder(path):
            pinned = _pinned(path, header.fingerprint, args.device)
            if pinned is not None:
                return pinned
        return load_model(args.model, args.checkpoint, args.weights, args.device)
    name = pretrained.find(header.fingerprint)
    if name is None:
        made = f" made with {header.model_name!r}" if header.model_name else ""
        raise FileNotFoundError(
            f"the file was{made} (model fingerprint {header.fingerprint}), which is not a shipped model: "
            f"pass --model RUN_OR_NAME"
        )
    return pretrained.load(name, args.device)


# ----- files ---------------------------------------------------------------------------------------------------
def check_output(path: str, suffixes: tuple[str, ...], force: bool, inputs: list[str]) -> Path:
    """Refuse before any work: a directory, an unwritable folder, an input, an existing file (without
    ``--force``), and a wrong extension (compress: not ``.pmz`` without ``--force``; decompress: lossy)."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory; give a file name, e.g. {out / ('out' + suffixes[0])}")
    if any(Path(i).exists() and out.exists() and out.samefile(i) for i in inputs):
        raise ValueError(f"output {out} is also an input")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"output {out}: the folder {out.parent} does not exist or is not writable")
    compressing = suffixes == (".pmz",)
    if not compressing and out.suffix.lower() not in suffixes:
        raise ValueError(f"output {out}: decompress writes lossless files only: give a .png (or .npy of levels)")
    if out.exists() and not force:
        kind = "an existing image" if out.suffix.lower() in IMAGE_SUFFIXES else "an existing file"
        raise FileExistsError(f"output {out} is {kind}; nothing was written: remove it or pass --force")
    if compressing and out.suffix.lower() != ".pmz" and not force:
        raise ValueError(f"output {out} does not end in .pmz (is it an input you forgot?); give OUT.pmz, or --force")
    return out


def read_images(paths: list[str], num_levels: int) -> list[np.ndarray]:
    """Image files or one .npy of levels -> (C, H, W) levels. Files are read by ``imagefiles.open_image`` (the
    rule of every command: 8-bit grey / RGB / palette / 1-bit; an alpha channel only if every pixel is opaque;
    16-bit, transparent and truncated files are one-line errors)."""
    from pixelmodels.imagefiles import levels_from_pixels, open_image

    if len(paths) == 1 and paths[0].lower().endswith(".npy"):
        arr = np.load(paths[0], allow_pickle=False)
        if arr.dtype.kind not in "iu" or arr.ndim not in (3, 4):
            raise ValueError(
                f"{paths[0]}: expected integer levels (N, C, H, W) or (C, H, W), got {arr.dtype} {arr.shape}"
            )
        return list(arr.astype(np.int64)) if arr.ndim == 4 else [arr.astype(np.int64)]
    if num_levels > 256:
        raise ValueError(f"a {num_levels}-level model needs a .npy of levels: 8-bit image files cannot hold them")
    images = []
    for path in paths:
        arr = np.asarray(open_image(path))  # 8-bit L or RGB, decoded in full; 16-bit, transparent, truncated: errors
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
        images.append(arr.astype(np.int64) if num_levels == 256 else levels_from_pixels(arr, num_levels))
    return images


def write_images(images: list, out: Path, num_levels: int, force: bool) -> list[str]:
    """(C, H, W) levels -> ``out`` (one image) or ``stem_0000.png``, ...; each written to a temporary file and
    renamed (``imagefiles.write_image_files``). Every name is checked before the first is written."""
    import torch

    from pixelmodels.imagefiles import write_image_files

    if out.suffix.lower() == ".npy" or len(images) == 1:
        if len({tuple(i.shape) for i in images}) > 1:
            raise ValueError("the images have different sizes: write them as .png")
        return write_image_files(torch.stack(list(images)), str(out), num_levels)
    names = [out.with_name(f"{out.stem}_{i:04d}{out.suffix}") for i in range(len(images))]
    for name in names:
        if name.exists() and not force:
            raise FileExistsError(f"output {name} exists; nothing was written: remove it or pass --force")
    return [write_image_files(img[None], str(name), num_levels)[0] for img, name in zip(images, names, strict=True)]


# ----- commands ------------------------------------------------------------------------------------------------
def _one_line(command):
    """An operating-system error (unwritable folder, full disk) as a one-line ValueError naming the file."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (FileNotFoundError, FileExistsError):
            raise
        except OSError as err:
            raise ValueError(f"{err.strerror or err}{': ' + str(err.filename) if err.filename else ''}") from None

    return run


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


@_one_line
def cmd_compress(args: argparse.Namespace) -> int:
    from pixelmodels import codec, pretrained

    out = check_output(args.output, (".pmz",), args.force, args.inputs)
    model = load_model(args.model, args.checkpoint, args.weights, args.device)
    if args.label is not None and getattr(model, "num_classes", None) is None:
        raise ValueError(f"--label {args.label}: the model is unconditional (it takes no class labels)")
    images = read_images(args.inputs, model.num_levels)
    cond = None if args.label is None else [args.label] * len(images)
    name = args.model or DEFAULT_MODEL
    run = Path(name) if Path(name).exists() and not pretrained.is_model_folder(name) else None
    name = str(run.resolve()) if run is not None else name
    data = codec.compress(model, images, cond=cond, batch_size=args.batch_size, method=args.method,
                          progress=_progress(args), model_name=name)  # fmt: skip
    if run is not None:
        pin_weights(run, model)
    from pixelmodels.training.checkpoint import atomic_write_bytes

    atomic_write_bytes(out, data)
    subpixels = sum(i.size for i in images)
    print(f"{len(images)} image(s) -> {out}: {len(data)} bytes, {8 * len(data) / subpixels:.4f} bits per sub-pixel")
    if codec.read_header(data).kind == codec.FLOAT:
        print("note: a float model's file decodes only where its network computes the same floats (same CPU kernels "
              "and torch build); an IntegerModel (pixelmodels.quantized) makes files that decode anywhere")  # fmt: skip
    return 0


@_one_line
def cmd_decompress(args: argparse.Namespace) -> int:
    from pixelmodels import codec

    out = check_output(args.output, LOSSLESS_OUT, args.force, [args.input])
    try:
        data = Path(args.input).read_bytes()
    except IsADirectoryError:
        raise ValueError(f"{args.input} is a directory, not a .pmz file") from None
    header = codec.read_header(data)
    model = model_for_file(header, args)
    images = codec.decompress_list(model, data, progress=_progress(args))
    written = write_images(images, out, model.num_levels, args.force)
    shown = ", ".join(map(str, written)) if len(written) <= 3 else f"{written[0]}, ..."
    print(f"{len(images)} image(s) -> {shown}")
    return 0


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def add_commands(sub) -> None:
    """Register ``compress`` and ``decompress`` on the CLI's subparsers."""

    def model_options(p):
        p.add_argument("--model", metavar="RUN_OR_NAME", help=f"a shipped model's name, a run directory or an "
                       f"exported model folder (compress default: {DEFAULT_MODEL}; decompress default: the shipped "
                       f"model with the file's fingerprint)")  # fmt: skip
        p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="a run's checkpoint (best)")
        p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="a run's EMA (default) or raw weights")
        p.add_argument("--device", default="cpu", help="torch device (cpu); float models: decode on the same kind")
        p.add_argument("--force", action="store_true", help="overwrite an existing output / allow another extension")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars (default: on a terminal)")  # fmt: skip

    p = sub.add_parser(
        "compress",
        help="losslessly compress images (any size) into a .pmz file",
        description="Losslessly compress images of any size (grey or RGB, 8-bit) with a model's conditionals "
        "driving a range coder. Default model: the shipped photograph model, whose files decode on any machine.",
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="image file(s) (PNG, grey or RGB) or one .npy of levels")
    p.add_argument("output", metavar="OUT", help="the .pmz file to write")
    model_options(p)
    p.add_argument("--batch-size", type=_positive, default=None, help="tiles per batch, each with its own checksum")
    p.add_argument("--label", type=int, default=None, help="class label of the images (class-conditional models)")
    p.add_argument("--method", choices=["auto", "fast", "window", "whole"], default="auto",
                   help="float models: how the network runs per step (auto: the fastest supported)")  # fmt: skip
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser(
        "decompress",
        help="restore images from a .pmz file, exactly",
        description="Restore the images of a .pmz file exactly, as PNG (several: OUT_0000.png, ...) or a .npy.",
    )
    p.add_argument("input", metavar="IN", help="the .pmz file")
    p.add_argument("output", metavar="OUT", help="the .png (or .npy of levels) to write")
    model_options(p)
    p.set_defaults(func=cmd_decompress)
