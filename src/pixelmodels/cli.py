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


def cmd_datasets(args: argparse.Namespace) -> int:
    from pixelmodels.data import available_datasets, dataset_info

    print(f"{'name':16s} {'shape':12s} {'levels':>6s}  {'splits (train/valid/test)':26s} {'present':8s} directory")
    for name in available_datasets():
        info = dataset_info(name, args.data_dir)
        shape = "x".join(map(str, info["image_shape"])) if info["image_shape"] else "from files"
        sizes = "/".join("?" if n is None else str(n) for n in info["splits"].values())
        present = {True: "yes", False: "no", None: "-"}[info["files_present"]]
        print(f"{name:16s} {shape:12s} {info['num_levels']:>6d}  {sizes:26s} {present:8s} {info['directory']}")
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
        "datasets",
        help="list the data sets",
        description="List the data sets: image shape, "
        "levels, split sizes, whether their files are present and where they are expected.",
    )
    p.add_argument("--data-dir", help="data directory (default: $PIXELMODELS_DATA, else ~/.cache/pixelmodels)")
    p.set_defaults(func=cmd_datasets)
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
