"""The picture commands of the CLI: ``inspect``, ``nll-map``, ``plot``, ``report`` (added by ``cli.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pixelmodels import explain, viz
from pixelmodels.cli_common import (
    check_class_flag,
    check_grid_size,
    check_output_path,
    int_range,
    positive_int,
    seed_int,
)
from pixelmodels.ordering import rank_map
from pixelmodels.registry import build

NLL_MAP_BATCH = 16  # images per forward pass of nll-map (bounds memory; one progress step each)


def parse_ints(text: str, count: int, what: str, low: int = 0) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < low:
        raise argparse.ArgumentTypeError(f"{what} must be {count} comma-separated integers >= {low}, got {text!r}")
    return values


def _add_model_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="a run directory (the trained model in its best checkpoint)")
    p.add_argument("--model", metavar="M", help="an untrained architecture instead of a run (see `pixelmodels models`)")
    p.add_argument(
        "--image-shape",
        default=(1, 28, 28),
        type=lambda s: parse_ints(s, 3, "--image-shape", low=1),
        metavar="C,H,W",
        help="image shape for --model (default 1,28,28)",
    )
    p.add_argument(
        "--levels", type=int_range(2), default=2, metavar="K", help="values per sub-pixel for --model (default 2)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyper-parameter of --model, e.g. --set num_layers=3 (repeatable; values are JSON or strings)",
    )
    add_checkpoint_flag(p)


def add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    """``--checkpoint best|last``, as in evaluate / sample / complete; ``--which`` is its old, hidden spelling."""
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="checkpoint of RUN (default best)")
    p.add_argument("--which", dest="checkpoint", choices=["best", "last"], help=argparse.SUPPRESS)


def load_model(args: argparse.Namespace):
    """The model named by RUN or --model; returns (model, run directory or None)."""
    if (args.run is None) == (args.model is None):
        raise ValueError("give either a run directory or --model NAME")
    if args.model is not None:
        hparams = {}
        for item in args.set:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
            try:
                hparams[key] = json.loads(text)
            except json.JSONDecodeError:
                hparams[key] = text
        return build(args.model, image_shape=args.image_shape, num_levels=args.levels, **hparams), None
    if args.set:
        raise ValueError("--set applies to --model only; a run's model comes from its checkpoint")
    import pixelmodels

    if not hasattr(pixelmodels, "load_checkpoint"):
        raise ValueError("this installation cannot load run directories (pixelmodels.load_checkpoint is missing)")
    return pixelmodels.load_checkpoint(args.run, which=args.checkpoint), Path(args.run)


def _position(model, args) -> tuple[int, int]:
    """``--position`` (default: the centre) and ``--channel``, checked against the model's image."""
    c, h, w = model.image_shape
    if args.channel >= c:
        raise ValueError(f"--channel {args.channel}: the model's images have channels 0..{c - 1}")
    if args.position is not None and not (args.position[0] < h and args.position[1] < w):
        raise ValueError(f"--position {args.position[0]},{args.position[1]} is outside the {h}x{w} image")
    return args.position if args.position is not None else (h // 2, w // 2)


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.out:
        check_output_path(args.out)
    model, _ = load_model(args)
    position = _position(model, args)
    magnitude = explain.receptive_field(model, position, args.channel)
    print(explain.summarize(model, position, args.channel, magnitude))
    if args.out:
        context = explain.context_mask(model, position, args.channel)
        rank = rank_map(model.order(), *model.image_shape)
        viz.save_receptive_field(magnitude, context, rank, position, args.channel, args.out)
        print(f"wrote {args.out}")
    return 0


def cmd_nll_map(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.split is None):
        raise ValueError("give images with --image, or --split SPLIT to take them from the run's data set")
    check_output_path(args.out)
    check_grid_size(len(args.image or []) or args.count, "-n")
    model, run = load_model(args)
    cond = None
    if args.image is not None:
        x = torch.stack([viz.load_image(p, model.image_shape, model.num_levels, args.resize) for p in args.image])
        names = [Path(p).name for p in args.image]
    else:
        from pixelmodels.report import read_run_config, run_dataset, spread

        if run is None:
            raise ValueError("--split needs a run directory (its data set), not --model")
        ds = run_dataset(read_run_config(run), args.split, args.data_dir)
        idx = spread(len(ds), args.count)
        x = ds.images[idx].long()
        names = [f"{ds.name} {args.split} #{i}" for i in idx.tolist()]
        if model.num_classes and ds.labels is not None:
            cond = ds.labels[idx]
    if args.class_label is not None:
        check_class_flag(model, args.class_label)
        cond = torch.full((len(x),), args.class_label)
    chunks = range(0, len(x), NLL_MAP_BATCH)
    nll = torch.cat([
        explain.nll_map(model, x[i : i + NLL_MAP_BATCH], None if cond is None else cond[i : i + NLL_MAP_BATCH])
        for i in tqdm(chunks, desc="nll-map", disable=None if len(chunks) > 1 else True, leave=False)
    ])  # fmt: skip  # (B, H, W) bits
    for name, bits in zip(names, nll, strict=True):
        print(f"{name}: {bits.sum().item() / model.num_dims:.4f} bits/dim")
    print(f"mean: {nll.sum().item() / (len(x) * model.num_dims):.4f} bits/dim")
    viz.save_nll_map(x, nll, args.out, model.num_levels, names=names)
    print(f"wrote {args.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pixelmodels.report import plot_run

    print(f"wrote {plot_run(args.run, args.out)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pixelmodels.report import report

    check_grid_size(args.samples, "--samples")
    if args.out:
        check_output_path(args.out, (".md",))
    out = report(
        args.run, args.out, num_samples=args.samples, seed=args.seed, split=args.split, which=args.checkpoint,
        data_dir=args.data_dir,
    )  # fmt: skip
    print(f"wrote {out} and {out.with_suffix('.html')}")
    return 0


def add_commands(sub) -> None:
    """Register the picture commands on the CLI's sub-parsers."""
    p = sub.add_parser(
        "inspect",
        help="parameters per layer, generation order and the receptive field of a pixel (PNG)",
        description="Describe a trained run or an untrained architecture: parameter count per layer, generation "
        "order, and the receptive field of one sub-pixel measured by gradients (blue: earlier sub-pixels it sees; "
        "orange: earlier ones it cannot see, e.g. the PixelCNN blind spot; grey: later ones).",
    )
    _add_model_source(p)
    p.add_argument(
        "--position",
        type=lambda s: parse_ints(s, 2, "--position"),
        metavar="H,W",
        help="the target pixel (default: the centre)",
    )
    p.add_argument("--channel", type=int_range(0), default=0, help="the target channel (default 0)")
    p.add_argument("--out", metavar="PNG", help="write the receptive-field picture here")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "nll-map",
        help="per-pixel negative log-likelihood heat maps of images (PNG) and their bits/dim",
        description="Score images pixel by pixel: a heat map of -log2 p (summed over channels) beside each image, "
        "bits/dim printed and written beside it. 8-bit images are quantized to the model's levels like the data "
        "sets (v * K // 256); pictures written by pixelmodels map back exactly.",
    )
    _add_model_source(p)
    p.add_argument("--image", action="append", metavar="IMG", help="an image file (repeatable)")
    p.add_argument(
        "--split", help="instead of --image: take -n images spread evenly over this split of the run's data set"
    )
    p.add_argument("-n", dest="count", type=positive_int, default=4, help="how many images of --split (default 4)")
    p.add_argument("--data-dir", help="where the run's data set is (default: the run's, else $PIXELMODELS_DATA)")
    p.add_argument("--resize", action="store_true", help="resize images of another size to the model's")
    p.add_argument("--class", dest="class_label", type=int_range(0), help="class label for a class-conditional model")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the heat maps")
    p.set_defaults(func=cmd_nll_map)

    p = sub.add_parser(
        "plot",
        help="plot a run's bits/dim curves (vs step and vs wall time)",
        description="Plot train and validation bits/dim of a run against step and wall-clock time from its "
        "metrics.jsonl.",
    )
    p.add_argument("run", help="the run directory")
    p.add_argument("--out", metavar="PNG", help="where to write the plot (default RUN/curves.png)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "report",
        help="write a results page for a run (report.md + self-contained report.html)",
        description="Write RUN/report.md (pictures in RUN/report_files/) and RUN/report.html (pictures embedded): "
        "config, bits/dim, curves, samples, completions, class grid, NLL maps, receptive field.",
    )
    p.add_argument("run", help="the run directory")
    p.add_argument("--out", metavar="MD", help="where to write the page (default RUN/report.md)")
    p.add_argument("--samples", type=positive_int, default=16, help="samples in the grid, at most 1024 (default 16)")
    p.add_argument("--seed", type=seed_int, default=0, help="sampling seed (default 0)")
    p.add_argument("--split", default="test", help="held-out images for completions and NLL maps (default test)")
    p.add_argument("--data-dir", help="where the run's data set is (default: the run's, else $PIXELMODELS_DATA)")
    add_checkpoint_flag(p)
    p.set_defaults(func=cmd_report)
