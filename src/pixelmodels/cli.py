"""The ``pixelmodels`` command line (DESIGN.md section 6). ``python -m pixelmodels`` is the same program."""

from __future__ import annotations

import argparse
import sys

from pixelmodels.registry import available_models, get_model_class, hyperparameters


def cmd_models(args: argparse.Namespace) -> int:
    for name in available_models():
        cls = get_model_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:18s} {summary}")
        if args.verbose:
            for key, default in hyperparameters(cls).items():
                print(f"    {key} = {default!r}")
    return 0


def _load_run(run: str, device: str):
    import pixelmodels

    if not hasattr(pixelmodels, "load_checkpoint"):
        raise ValueError("this installation has no pixelmodels.load_checkpoint (training support is missing)")
    return pixelmodels.load_checkpoint(run).to(device)


def cmd_compress(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import torch

    from pixelmodels import bits_per_dim, codec

    model = _load_run(args.run, args.device)
    images = codec.read_image_files(args.inputs, model.image_shape, model.num_levels)
    cond = None if args.label is None else [args.label] * len(images)
    data = codec.compress(model, images, cond=cond, batch_size=args.batch_size, progress=args.progress)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    nats = 0.0
    with torch.no_grad():
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size].to(args.device)
            labels = None if cond is None else torch.full((len(batch),), args.label, device=args.device)
            nats -= model.eval().log_prob(batch, labels).sum().item()
    model_bpd = bits_per_dim(nats, images.numel())
    bpd = 8 * len(data) / images.numel()
    print(f"{len(images)} image(s) -> {out}: {len(data)} bytes, {bpd:.4f} bits/dim (model: {model_bpd:.4f})")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pixelmodels import codec

    model = _load_run(args.run, args.device)
    data = Path(args.input).read_bytes()
    images = codec.decompress(model, data, progress=args.progress)
    written = codec.write_image_files(images, args.output, model.num_levels)
    print(f"{len(images)} image(s) -> {', '.join(written) if len(written) <= 3 else written[0] + ', ...'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelmodels",
        description="Train, evaluate, sample, complete and compress images with exact-likelihood "
        "autoregressive models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("models", help="list the registered models", description="List the registered models.")
    p.add_argument("-v", "--verbose", action="store_true", help="also list each model's hyper-parameters")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser(
        "compress",
        help="losslessly compress images with a trained model",
        description="Losslessly compress images with a trained model (arithmetic coding driven by its "
        "conditionals). The same run is needed to decompress, on the same kind of device.",
    )
    p.add_argument("run", help="run directory of a trained model")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image file(s) (PNG, grey or RGB) or one .npy of levels")
    p.add_argument("output", metavar="OUT", help="compressed file to write (e.g. images.pmz)")
    p.add_argument("--batch-size", type=int, default=64, help="images coded together (default 64)")
    p.add_argument("--label", type=int, default=None, help="class label of the images (class-conditional models)")
    p.add_argument("--device", default="cpu", help="device to run the model on; decompress on the same kind")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser(
        "decompress",
        help="restore images compressed with `compress`",
        description="Restore images compressed with `pixelmodels compress`, exactly.",
    )
    p.add_argument("run", help="run directory of the model used to compress")
    p.add_argument("input", metavar="IN", help="compressed file")
    p.add_argument("output", metavar="OUT", help="image file to write (several images: OUT_0000.png, ...) or .npy")
    p.add_argument("--device", default="cpu", help="device to run the model on (same kind as when compressing)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=cmd_decompress)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"pixelmodels {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
