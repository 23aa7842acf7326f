"""Run directories: what counts as a run, when one may be replaced or resumed, and how a replaced run is kept
until its successor has proved itself.

A run is a folder pixelmodels made: it holds the marker file ``pixelmodels-run.json``, or (runs written before
the marker existed) a ``config.json`` in the run-config schema beside a ``checkpoints/`` folder holding a
pixelmodels checkpoint. Nothing else is ever deleted by ``--overwrite``: a folder that merely has some
``config.json`` is refused, as are symbolic links and the current directory (or one above it).

``--overwrite`` moves the old run aside (a rename to ``.NAME.replaced-PID`` beside it) instead of deleting it;
the trainer deletes it once the new run has written its first checkpoint, and puts it back if the new run
fails before that (``ReplacedRun``); a process killed outright (``kill -9``) in between leaves it there.

``--resume`` (``check_resume``) needs a checkpoint with its optimizer, RNG and training state, allows only the
``RESUMABLE_CHANGES`` keys to differ, and never fewer steps than were trained.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

from pixelmodels.data.dataset import DATA_ENV, resolve_data_dir
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.config import RunConfig

MARKER = "pixelmodels-run.json"
CONFIG_SECTIONS = ("model", "data", "optim", "train")

# Keys that may change when a run is resumed: cadence, device and evaluation details, not what is learned.
RESUMABLE_CHANGES = {
    "train.steps", "train.log_every", "train.eval_every", "train.sample_every", "train.checkpoint_every",
    "train.num_samples", "train.num_threads", "train.device", "train.precision", "train.compile", "data.data_dir",
    "data.eval_batch_size", "data.max_eval_images", "data.max_test_images", "data.prefetch", "train.dist_timeout_s",
}  # fmt: skip


def write_marker(run_dir: Path) -> None:
    ckpt.atomic_write_text(run_dir / MARKER, json.dumps({"format": "pixelmodels-run", "version": 1}) + "\n")


def _json_object(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_run_dir(path: Path) -> bool:
    """True for a folder pixelmodels made (see the module docstring); anything else is not a run."""
    if (path / MARKER).is_file():
        return True
    config = _json_object(path / "config.json")
    if config is None or not set(CONFIG_SECTIONS) <= set(config):
        return False
    metas = (_json_object(path / "checkpoints" / f"{name}.json") for name in ("last", "best"))
    return any(meta is not None and meta.get("format") == ckpt.FORMAT for meta in metas)


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse to mix runs: an existing run needs --resume (continue) or --overwrite (replace).

    Returns True when an old run is to be replaced (``overwrite``); nothing is moved or deleted here.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if resume:
        if not (run_dir / "checkpoints" / "last.json").exists():
            raise FileNotFoundError(f"nothing to resume in {run_dir}: no checkpoints/last.json")
        return False
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} exists and is not a directory")
    if not (run_dir.exists() and any(run_dir.iterdir())):
        return False
    if not is_run_dir(run_dir):
        raise FileExistsError(f"{run_dir} exists, is not empty and is not a pixelmodels run; choose another --out")
    if not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite")
    if run_dir.is_symlink():
        raise FileExistsError(
            f"--out {run_dir} is a symbolic link; --overwrite replaces only a real directory (give {run_dir.resolve()})"
        )
    target, cwd = run_dir.resolve(), Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise FileExistsError(f"--overwrite would replace the current directory ({cwd}); run from outside it")
    return True


class ReplacedRun:
    """An old run moved aside by ``--overwrite``: ``discard`` once the new run has a checkpoint, ``restore``
    (delete the new folder, move the old one back) when the new run fails before that. Does nothing until
    ``move_aside`` is called."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.aside: Path | None = None

    def move_aside(self, run_dir: Path) -> None:
        self.run_dir, self.aside = run_dir, run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
        os.replace(run_dir, self.aside)

    def discard(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def restore(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            os.replace(self.aside, self.run_dir)
            self.aside = None


def _config_changes(old: dict, new: dict) -> list[str]:
    changed = []
    for section in ("model", "data", "optim", "train"):
        for key in sorted(set(old.get(section, {})) | set(new[section])):
            if old.get(section, {}).get(key) != new[section].get(key):
                changed.append(f"{section}.{key}")
    return changed


def check_resume(run_dir: Path, meta: dict, config: RunConfig) -> None:
    """A checkpoint to resume from must hold the training state; the new config may change only cadence, device
    and evaluation details, and may not ask for fewer steps than were already trained."""
    missing = [k for k in ("optimizer", "rng", "state") if k not in meta]
    missing += [f"state.{k}" for k in ("data_order", "best_step", "elapsed_s") if k not in meta.get("state", {})]
    if missing:
        raise ValueError(f"checkpoint {run_dir / 'checkpoints' / 'last.json'} cannot be resumed: missing {missing}")
    bad = [k for k in _config_changes(meta["config"], config.to_dict()) if k not in RESUMABLE_CHANGES]
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)} when resuming {run_dir}; start a new run instead")
    if config.train.steps < meta["step"]:
        raise ValueError(
            f"train.steps={config.train.steps} is fewer than the {meta['step']} steps {run_dir} has trained; "
            f"resume with train.steps >= {meta['step']}"
        )


def store_absolute_data_dir(config: RunConfig) -> None:
    """Store the data directory as an absolute path (from data.data_dir or $PIXELMODELS_DATA), so evaluate, report
    and --resume find the data from any working directory."""
    if config.data.data_dir is not None or os.environ.get(DATA_ENV):
        config.data.data_dir = str(resolve_data_dir(config.data.data_dir).resolve())


def resume_config(run_dir: str | Path) -> RunConfig:
    """The config of the run in ``run_dir``: ``config.json``, else the copy every checkpoint holds (last.json)."""
    run_dir = Path(run_dir)
    for path in (run_dir / "config.json", run_dir / "checkpoints" / "last.json"):
        if path.is_file():
            data = _json_object(path)
            if data is None:
                raise ValueError(f"{path} is not a JSON object")
            return RunConfig.from_dict(data if path.name == "config.json" else data.get("config"))
    raise FileNotFoundError(f"nothing to resume in {run_dir}: no config.json and no checkpoints/last.json")


class StopRequest:
    """Ctrl-C (SIGINT) while training: the first one asks the loop to stop after the current step (it saves the
    'last' checkpoint and raises ``TrainingInterrupted``); a second one interrupts at once. Installed only in the
    main thread of a single-process run (in a torchrun job the ranks could stop at different steps)."""

    def __init__(self, enabled: bool = True):
        self.requested = False
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous, self._installed = None, False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def install(self) -> None:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def remove(self) -> None:
        if self.enabled and self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
            self._installed = False
