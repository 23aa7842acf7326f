"""Models shipped inside the package, loaded by name: safetensors + JSON, never pickle.

    >>> from pixelmodels import pretrained
    >>> pretrained.available()                  # names of the shipped models, e.g. ['photo-gated']
    >>> model = pretrained.load("photo-gated")  # doctest: +SKIP
    >>> pretrained.find(fingerprint)            # the name of the shipped model with that fingerprint, or None

File layout (the contract between whoever exports a model and this loader). One folder per model,
``src/pixelmodels/pretrained/<name>/`` (the name: lower case letters, digits and ``-``), holding:

- ``pretrained.json``: the manifest, written by ``save`` (below)::

      {"format": "pixelmodels-pretrained", "version": 1, "name": "photo-gated",
       "kind": "integer" | "float",
       "fingerprint": "<32 hex digits: the model's fingerprint, as stored in .pmz headers>",
       "image_shape": [C, H, W], "num_levels": K,
       "description": "one line", "trained_on": "photographs (train split); never Kodak",
       "files": {"<file name>": "<sha256 hex>", ...}}      # every other file of the folder

- kind ``"integer"``: the files ``pixelmodels.quantized.IntegerModel.save(folder)`` writes (safetensors + JSON;
  that package defines their names); loaded with ``IntegerModel.load(folder)``. These code files that decode
  bit-exactly on any machine (the photograph model of ``pixelmodels compress``).
- kind ``"float"``: ``model.json`` (the model's ``config``: the keyword arguments of ``pixelmodels.build``, with
  ``name``) and ``model.safetensors`` (its ``state_dict``); loaded with ``pixelmodels.build`` + ``load_state_dict``
  (e.g. the binarized-MNIST weights).

To ship a model: ``pretrained.save(model, "src/pixelmodels/pretrained/<name>", description=..., trained_on=...)``
writes the model's files and the manifest (with the SHA-256 of every file, checked on loading). A folder without
``pretrained.json`` that holds an ``IntegerModel`` is still loaded (kind integer; fingerprint taken from the model).
``pyproject.toml`` ships ``pretrained/*/*.json`` and ``pretrained/*/*.safetensors`` as package data.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

FORMAT = "pixelmodels-pretrained"
VERSION = 1
ROOT = Path(__file__).resolve().parent
MANIFEST = "pretrained.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def available() -> list[str]:
    """Names of the shipped models (folders of this package that hold a model)."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and _NAME.match(p.name) and _has_model(p))


def _has_model(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() or any(folder.glob("*.safetensors"))


def manifest(name: str) -> dict[str, Any]:
    """The manifest of shipped model ``name`` (see the module docstring); FileNotFoundError for an unknown name."""
    return _manifest(_folder(name))


def manifest_of(folder: str | Path) -> dict[str, Any]:
    """The manifest of the model in ``folder`` (see the module docstring)."""
    return _manifest(Path(folder))


def _manifest(folder: Path) -> dict[str, Any]:
    name = folder.name
    path = folder / MANIFEST
    if not path.is_file():
        return {"name": name, "kind": "integer", "fingerprint": None, "files": {}}
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"shipped model {name!r}: corrupt {MANIFEST} ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"shipped model {name!r}: {MANIFEST} is not a version-{VERSION} pixelmodels manifest")
    return meta


def find(fingerprint: str) -> str | None:
    """The name of the shipped model whose manifest has this fingerprint (hex), or None."""
    for name in available():
        known = manifest(name).get("fingerprint")
        if known is None:  # a folder without a manifest: ask the model itself
            known = fingerprint_of(load(name))
        if known == fingerprint:
            return name
    return None


def load(name: str, device: str | torch.device = "cpu"):
    """Load shipped model ``name``: an ``IntegerModel`` (kind integer) or an ``AutoregressiveModel`` in eval mode
    (kind float). Files that do not match their manifest's SHA-256 are a ValueError."""
    return load_folder(_folder(name), device)


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder in this layout (holds a ``pretrained.json``), e.g. an exported model."""
    return (Path(path) / MANIFEST).is_file()


def load_folder(folder: str | Path, device: str | torch.device = "cpu"):
    """Load a model from a folder in the layout above (a shipped one, or one exported with ``save``)."""
    folder = Path(folder)
    name = folder.name
    meta = _manifest(folder)
    for file, digest in meta.get("files", {}).items():
        path = folder / Path(file).name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"shipped model {name!r}: {file} is missing or does not match its SHA-256")
    if meta["kind"] == "integer":
        from pixelmodels.quantized import IntegerModel

        model = IntegerModel.load(folder, device)
    elif meta["kind"] == "float":
        import safetensors.torch

        from pixelmodels.registry import build

        config = dict(json.loads((folder / "model.json").read_text()))
        model = build(config.pop("name"), **config)
        model.load_state_dict(safetensors.torch.load_file(folder / "model.safetensors"))
        model = model.eval().to(device)
    else:
        raise ValueError(f"shipped model {name!r}: unknown kind {meta['kind']!r}")
    expected = meta.get("fingerprint")
    if expected is not None and fingerprint_of(model) != expected:
        raise ValueError(f"shipped model {name!r}: its weights do not have the fingerprint of its manifest")
    return model


def fingerprint_of(model) -> str:
    """The fingerprint stored in .pmz headers (``codec.fingerprint``)."""
    from pixelmodels.codec import fingerprint

    return fingerprint(model)


def save(model, folder: str | Path, *, description: str = "", trained_on: str = "") -> Path:
    """Write ``model`` (an ``IntegerModel`` or a float model) and its manifest into ``folder``; returns it."""
    import safetensors.torch

    folder = Path(folder)
    if not _NAME.match(folder.name):
        raise ValueError(f"a shipped model's folder name must be lower case letters, digits and '-': {folder.name}")
    folder.mkdir(parents=True, exist_ok=True)
    integer = hasattr(model, "frequencies") and hasattr(model, "save")
    if integer:
        model.save(folder)
    else:
        (folder / "model.json").write_text(json.dumps(model.config, indent=1, sort_keys=True))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, folder / "model.safetensors")
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
             if p.is_file() and p.name != MANIFEST}  # fmt: skip
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "name": folder.name,
        "kind": "integer" if integer else "float",
        "fingerprint": fingerprint_of(model),
        "image_shape": list(model.image_shape),
        "num_levels": int(model.num_levels),
        "description": description,
        "trained_on": trained_on,
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def _folder(name: str) -> Path:
    folder = ROOT / name
    if not _NAME.match(name) or not folder.is_dir() or not _has_model(folder):
        known = ", ".join(available()) or "none yet"
        raise FileNotFoundError(f"no shipped model named {name!r} (shipped: {known})")
    return folder
