"""Join the stages of separately trained ``staged`` runs into one run (``pixelmodels compose``).

Stage by stage (``models/stages.py``): train the first stage with ``pixelmodels train ... --stage first``
(objective: log p(first view) alone) and the rest with ``--stage rest`` (log p(rest | first view) alone), same
config otherwise. ``compose_runs`` takes the first-stage weights (raw and EMA) from the first run and the rest
weights from the second, checks the two configs agree on everything but ``train_stage``, and writes a new run
directory (config.json + checkpoints/best and last) whose model is the composition (``train_stage="all"``):
``pixelmodels evaluate``, ``sample`` and ``compress`` then work on it as on any run.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import torch

from pixelmodels.registry import build
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training import rundir

_PARTS = {"first": "first_model.", "rest": "rest_model."}


def _stage_config(meta: dict, source: str) -> dict:
    config = dict(meta["model"])
    if config.get("name") != "staged":
        raise ValueError(f"{source} holds a {config.get('name')!r} model, not a 'staged' one")
    config.pop("train_stage", None)
    return config


def compose_runs(first_run: str | Path, rest_run: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Compose the first stage of ``first_run`` with the rest stage of ``rest_run`` into the run ``out``."""
    out = Path(out)
    replace = rundir.check_run_dir(out, resume=False, overwrite=overwrite)  # the trainer's rules for --out
    meta_a, tensors_a = ckpt.read_checkpoint(first_run, "best")
    meta_b, tensors_b = ckpt.read_checkpoint(rest_run, "best")
    config_a, config_b = _stage_config(meta_a, str(first_run)), _stage_config(meta_b, str(rest_run))
    if config_a != config_b:
        diff = sorted(k for k in set(config_a) | set(config_b) if config_a.get(k) != config_b.get(k))
        raise ValueError(f"the two runs' staged models differ in {diff}: train both stages from one config")
    for stage, meta in (("first", meta_a), ("rest", meta_b)):
        if meta["model"].get("train_stage") not in (stage, "all"):
            raise ValueError(f"the {stage} run trained stage {meta['model'].get('train_stage')!r}, not {stage!r}")
    name = config_b.pop("name")
    model = build(name, train_stage="all", **config_b)
    has_ema = meta_a.get("has_ema") and meta_b.get("has_ema")
    models = {}
    for prefix in ("model", "ema") if has_ema else ("model",):
        merged = {k: v for k, v in tensors_a.items() if k.startswith(f"{prefix}/{_PARTS['first']}")}
        merged |= {k: v for k, v in tensors_b.items() if k.startswith(f"{prefix}/{_PARTS['rest']}")}
        models[prefix] = build(name, train_stage="all", **config_b)
        ckpt.load_state(models[prefix], merged, prefix, f"{first_run} + {rest_run}")
    model, ema = models["model"], models.get("ema")
    run_config = json.loads(json.dumps(meta_b["config"]))
    run_config["model"]["hparams"]["train_stage"] = "all"
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staging = Path(tmp) / "run"
        for which in ("best", "last"):
            state = {"composed_from": [str(first_run), str(rest_run)]}
            ckpt.save_checkpoint(
                staging / "checkpoints", which, step=int(meta_b["step"]), model=model, ema_model=ema,
                run_config=run_config, state=state,
            )  # fmt: skip
        ckpt.atomic_write_text(staging / "config.json", json.dumps(run_config, indent=1) + "\n")
        rundir.write_marker(staging)
        old = rundir.ReplacedRun()
        if replace:
            old.move_aside(out)  # kept until the new run is in place
        elif out.exists():
            out.rmdir()  # an empty folder
        try:
            shutil.move(str(staging), str(out))
        except BaseException:
            old.restore()
            raise
        old.discard()
    return out


@torch.no_grad()
def stage_bits_per_dim(model, images: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Each stage's exact NLL on ``images`` in bits per dimension of the whole image, and their sum."""
    totals: dict[str, float] = {}
    model.eval()
    for start in range(0, len(images), batch_size):
        for k, v in model.stage_log_probs(images[start : start + batch_size].long()).items():
            totals[k] = totals.get(k, 0.0) - v.double().sum().item()
    scale = 1.0 / (len(images) * model.num_dims * math.log(2))
    out = {k: v * scale for k, v in totals.items()}
    out["total"] = sum(out.values())
    return out


def evaluate_stages(run: str | Path, split: str = "test", max_images: int | None = None) -> dict[str, float]:
    """Per-stage bits/dim of a composed (or stage) run on a split of its own data set."""
    from pixelmodels.data import load_dataset
    from pixelmodels.training.config import RunConfig

    meta, tensors = ckpt.read_checkpoint(run, "best")
    model = ckpt.model_from_checkpoint(meta, tensors, "ema", str(run))
    d = RunConfig.from_dict(meta["config"]).data
    dataset = load_dataset(d.dataset, split, data_dir=d.data_dir, num_levels=d.num_levels, **d.options)
    images = dataset.images if max_images is None else dataset.images[:max_images]
    return stage_bits_per_dim(model, images)
