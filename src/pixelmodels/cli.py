"""The ``pixelmodels`` command line (DESIGN.md section 6). ``python -m pixelmodels`` is the same program."""

from __future__ import annotations

import argparse
import sys

from pixelmodels.cli_viz import add_commands as add_viz_commands
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
    add_viz_commands(sub)  # inspect, nll-map, plot, report
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
