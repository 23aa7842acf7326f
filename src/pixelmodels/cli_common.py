"""What every command of the CLI shares: one-line argument errors, checked numeric flags, the device and
output-path checks made before any work, and the size caps (docs/cli.md)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

#: Images in one PNG grid (sample -n, complete -n, report --samples, nll-map -n): beyond this a grid is a
#: picture nobody can look at, and the work takes hours; draw several grids with different --seed instead.
MAX_GRID_IMAGES = 1024


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``pixelmodels CMD: error: ...``) instead of the usage block."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def int_range(low: int, high: int | None = None):
    """An argparse ``type``: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def float_range(low: float, high: float | None = None, low_inclusive: bool = True, high_inclusive: bool = True):
    """An argparse ``type``: a finite number >= low (> low unless ``low_inclusive``), <= high (< unless
    ``high_inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value < low if low_inclusive else value <= low
        too_high = high is not None and (value > high if high_inclusive else value >= high)
        if not math.isfinite(value) or too_low or too_high:
            bound = (">= " if low_inclusive else "> ") + f"{low:g}"
            if high is not None:
                bound += (" and <= " if high_inclusive else " and < ") + f"{high:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    return parse


positive_int = int_range(1)
seed_int = int_range(0, 2**63 - 1)


def device_arg(text: str) -> str:
    """An argparse ``type`` for ``--device``: a device that exists on this machine."""
    from pixelmodels.training.resources import check_device

    try:
        check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] = (".png",), flag: str = "--out") -> Path:
    """Refuse, before the work starts, an output that cannot be written: a directory, a wrong extension, or a
    parent folder that is a file or not writable (a missing parent folder is created when writing)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; give a file name, e.g. {path / ('out' + suffixes[0])}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {path} must end in {' or '.join(suffixes)}")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path}: {parent} is not writable")
    return path


def check_grid_size(n: int, flag: str) -> None:
    if n > MAX_GRID_IMAGES:
        raise ValueError(
            f"{flag} {n}: at most {MAX_GRID_IMAGES} images in one grid; make several grids (different --seed)"
        )


def check_class_flag(model, label: int | None) -> None:
    """``--class`` must name one of the model's classes (and needs a class-conditional model)."""
    if label is not None and (not model.num_classes or label >= model.num_classes):
        classes = f"classes 0..{model.num_classes - 1}" if model.num_classes else "no classes (it is unconditional)"
        raise ValueError(f"--class {label}: model {model.model_name!r} has {classes}")


def error_message(err: BaseException) -> str:
    """One line for an error: an OSError names its file (``No space left on device: runs/x/...``)."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
