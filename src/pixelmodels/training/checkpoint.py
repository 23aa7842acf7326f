"""Checkpoints: tensors in safetensors, everything else in JSON; written atomically; no pickle anywhere.

A run directory keeps two checkpoints, ``last`` (for ``--resume``) and ``best`` (lowest validation
bits/dim, for evaluation and sampling)::

    runs/x/checkpoints/last.json                    config, model config, step, optimizer scalars, RNG and
                                                    data-order state, metrics, and the name + SHA-256 of:
    runs/x/checkpoints/last-step0001500.safetensors model/*, ema/*, optim/<param>/<name>, rng/* tensors

Each file is written to a temporary name and moved into place with ``os.replace``; the JSON goes last and
is the commit point, so a crash at any moment leaves the previous checkpoint readable. The SHA-256 in the
JSON catches a tensors file that does not belong to it (corrupt or mismatched -> ``ValueError``).

``load_checkpoint(path)`` rebuilds the model from the JSON alone (no flags needed) and loads its EMA weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors.torch
import torch
from torch import nn

from pixelmodels.registry import build

FORMAT = "pixelmodels-checkpoint"
VERSION = 1
COMPILE_PREFIX = "_orig_mod."

Which = Literal["best", "last"]


class NonFiniteTensorsError(ValueError):
    """A checkpoint would hold NaN or infinite weights or optimizer state; it is not written."""


# ----- atomic files ----------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ----- state-dict helpers ----------------------------------------------------------------------------------
def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``_orig_mod.`` segment ``torch.compile`` puts in parameter names, so a checkpoint saved from a
    compiled module loads into a plain one (and the other way round)."""
    return {k.replace(COMPILE_PREFIX, ""): v for k, v in state_dict.items()}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` (and, later, DistributedDataParallel) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True).contiguous()  # a copy: safetensors refuses shared storage


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into JSON scalars and named tensors."""
    sd = optimizer.state_dict()
    tensors, state = {}, {}
    for pid, entries in sd["state"].items():
        state[str(pid)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{name}"] = _cpu(value)
            else:
                state[str(pid)][name] = value
    return {"param_groups": sd["param_groups"], "state": state}, tensors


def optimizer_from_flat(optimizer: torch.optim.Optimizer, scalars: dict, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {int(pid): dict(entries) for pid, entries in scalars["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    """Python, NumPy and torch (CPU + CUDA) generator states: JSON part, tensor part."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    scalars = {
        "python": [version, list(mt), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    return scalars, tensors


def set_rng_state(scalars: dict, tensors: dict[str, torch.Tensor]) -> None:
    version, mt, gauss = scalars["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ----- writing ---------------------------------------------------------------------------------------------
def save_checkpoint(
    folder: str | Path,
    which: Which,
    *,
    step: int,
    model: nn.Module,
    ema_model: nn.Module | None,
    run_config: dict,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict | None = None,
) -> Path:
    """Write checkpoint ``which`` ('last' or 'best') into ``folder``; returns the JSON path.

    ``state`` holds JSON-able training state (data order, metrics, ...); with ``optimizer`` the optimizer
    and the RNG states are stored too (what ``--resume`` needs).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = unwrap_model(model)
    tensors = {f"model/{k}": _cpu(v) for k, v in strip_compile_prefix(model.state_dict()).items()}
    if ema_model is not None:
        tensors.update({f"ema/{k}": _cpu(v) for k, v in strip_compile_prefix(ema_model.state_dict()).items()})
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "which": which,
        "step": int(step),
        "model": model.config,
        "config": run_config,
        "has_ema": ema_model is not None,
        "state": state or {},
    }
    if optimizer is not None:
        meta["optimizer"], optim_tensors = optimizer_to_flat(optimizer)
        meta["rng"], rng_tensors = rng_state()
        tensors.update(optim_tensors)
        tensors.update(rng_tensors)
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # a NaN must never become the "last good checkpoint" (and delete the previous one)
        raise NonFiniteTensorsError(f"non-finite values in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}; "
                                    f"checkpoint {which!r} not saved")  # fmt: skip
    data = safetensors.torch.save(tensors)
    tensors_name = f"{which}-step{step:07d}.safetensors"
    atomic_write_bytes(folder / tensors_name, data)
    meta["tensors"] = tensors_name
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    json_path = folder / f"{which}.json"
    atomic_write_text(json_path, json.dumps(meta, indent=1))  # the commit point
    for old in folder.glob(f"{which}-step*.safetensors"):
        if old.name != tensors_name:
            old.unlink()
    return json_path


# ----- reading ---------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | Path, which: Which = "best") -> Path:
    """A run directory, its ``checkpoints`` folder or a checkpoint's JSON file -> the JSON file.

    In a folder, ``which`` picks the checkpoint; a missing one is a FileNotFoundError (no silent fallback from
    'best' to 'last': the message says to ask for 'last').
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"no run directory or checkpoint at {path}")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if (folder / f"{which}.json").is_file():
        return folder / f"{which}.json"
    if which == "best" and (folder / "last.json").is_file():
        raise FileNotFoundError(
            f"no best checkpoint in {path} (no validation has run yet); use --checkpoint last for the latest weights"
        )
    raise FileNotFoundError(f"no checkpoint in {path} (expected {folder / (which + '.json')})")


def read_checkpoint(path: str | Path, which: Which = "best") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a checkpoint: (JSON metadata, tensors). Corrupt or mismatched files -> ValueError."""
    json_path = resolve_checkpoint(path, which)
    try:
        meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt checkpoint {json_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{json_path} is not a pixelmodels checkpoint")
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {json_path} has format version {meta.get('version')}, expected {VERSION}")
    for key in ("tensors", "sha256", "model", "step", "config"):
        if key not in meta:
            raise ValueError(f"corrupt checkpoint {json_path}: missing {key!r}")
    tensors_path = json_path.parent / Path(meta["tensors"]).name
    if not tensors_path.is_file():
        raise ValueError(f"corrupt checkpoint {json_path}: its tensors file {tensors_path.name} is missing")
    data = tensors_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"corrupt checkpoint {json_path}: {tensors_path.name} does not match its SHA-256")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"corrupt checkpoint {tensors_path}: {err}") from None
    return meta, tensors


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    """Load the ``prefix/*`` tensors into ``model``; any missing, unexpected or mis-shaped key -> ValueError."""
    state = strip_compile_prefix({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")})
    own = unwrap_model(model).state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {source} does not match the model: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ValueError(
                f"checkpoint {source} does not match the model: {k} has shape {tuple(v.shape)}, "
                f"model expects {tuple(own[k].shape)}"
            )
    unwrap_model(model).load_state_dict(state)


def model_from_checkpoint(meta: dict, tensors: dict[str, torch.Tensor], weights: Literal["ema", "raw"], source: str):
    try:
        model_config = dict(meta["model"])
        name = model_config.pop("name")
        model = build(name, **model_config)
    except (TypeError, KeyError) as err:
        raise ValueError(f"checkpoint {source} has an invalid model config: {err}") from None
    prefix = "ema" if weights == "ema" and meta.get("has_ema") else "model"
    load_state(model, tensors, prefix, source)
    return model.eval()


def load_checkpoint(
    path: str | Path,
    which: Which = "best",
    weights: Literal["ema", "raw"] = "ema",
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a trained model from a run directory or checkpoint file, in eval mode.

    Args:
        path: a run directory (``runs/x``), its ``checkpoints`` folder, or a checkpoint JSON file.
        which: 'best' (lowest validation bits/dim) or 'last'.
        weights: 'ema' (the Polyak average, used for evaluation; the default) or 'raw' (the trained weights).
        device: where to put the model.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: corrupt checkpoint, or tensors that do not fit the model config stored with them.
    """
    meta, tensors = read_checkpoint(path, which)
    return model_from_checkpoint(meta, tensors, weights, str(path)).to(device)
