"""Results pages and curves for a run directory: ``pixelmodels plot RUN`` and ``pixelmodels report RUN``.

``write_report`` puts one page together from a model and what is known about its run: the config, the
bits/dim (from the metrics log, the checkpoint, and the NLL of the images shown), the training curves, a
sample grid drawn with a fixed seed, completions of held-out images (top half given), a class grid for
class-conditional models, per-pixel NLL maps and the receptive field of the centre pixel. It writes
``report.md`` (pictures beside it in ``report_files/``) and ``report.html`` (the same page with every picture
embedded, so one file can be sent around). ``report(run_dir)`` gathers those inputs from a run directory.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pixelmodels import explain, viz
from pixelmodels.ordering import rank_map
from pixelmodels.viz import write_bytes_atomic

log = logging.getLogger(__name__)

TIME_KEYS = ("time", "elapsed", "wall_time", "elapsed_s", "seconds")
SPLIT_NAMES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}


# ----- metrics.jsonl -> curves ------------------------------------------------------------------------------
def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON-lines metrics file; a torn last line (a run killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    records, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("skipping a torn last line in %s", path)
                continue
            raise ValueError(f"{path}:{i + 1} is not valid JSON") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def _split_of(record: dict, key: str) -> str | None:
    """Which split a bits/dim key of a record belongs to: 'train', 'validation', 'test' or None."""
    k = key.lower()
    if "bpd" not in k and "bits_per_dim" not in k and "bits/dim" not in k:
        return None
    for sep in ("/", "_", "."):
        head = k.split(sep)[0]
        if head in SPLIT_NAMES:
            return SPLIT_NAMES[head]
    split = str(record.get("split", record.get("phase", "train"))).lower()
    return SPLIT_NAMES.get(split, split)


def read_curves(records: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """Bits/dim per split against step and wall time, from metrics records.

    Reads records like ``{"step": 100, "time": 12.5, "train_bpd": 1.3}``, ``{"step": 500, "valid_bpd": 1.2}``
    or ``{"split": "valid", "step": 500, "bpd": 1.2}``; the time key may be ``time``, ``elapsed``,
    ``wall_time`` or ``elapsed_s`` (seconds since the start). A record without a time (the trainer logs it on
    its train lines only) gets one interpolated in step from the records that have one.
    """
    curves: dict[str, dict[str, list[float]]] = {}
    clock: dict[float, float] = {}  # step -> the first time logged at that step
    for r in records:
        if isinstance(r.get("step"), (int, float)) and (t := _time_of(r)) is not None:
            clock.setdefault(float(r["step"]), t)
    clock_steps = sorted(clock)
    for r in records:
        step = r.get("step")
        t = _time_of(r)
        if t is None and clock and step is not None:  # e.g. validation lines: the time of the nearby train lines
            t = float(np.interp(float(step), clock_steps, [clock[s] for s in clock_steps]))
        for key, value in r.items():
            split = _split_of(r, key)
            if split is None or step is None or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            c = curves.setdefault(split, {"step": [], "time": [], "bpd": []})
            c["step"].append(float(step))
            c["bpd"].append(float(value))
            if t is not None:
                c["time"].append(float(t))
    return curves


def _time_of(record: dict) -> float | None:
    t = next((record[k] for k in TIME_KEYS if k in record), None)
    return float(t) if isinstance(t, (int, float)) else None


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Plot a run's bits/dim curves (metrics.jsonl) into ``out`` (default ``RUN/curves.png``)."""
    run_dir = _check_run_dir(run_dir)
    curves = read_curves(read_metrics(run_dir / "metrics.jsonl"))
    if not curves:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} has no bits/dim values yet")
    return viz.plot_curves(curves, out or run_dir / "curves.png", title=run_dir.name)


def _check_run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    return run_dir


# ----- the page ---------------------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """What the page shows besides the model: every field is optional."""

    title: str
    config: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)  # e.g. {"best validation bits/dim": 1.23, "step": 500}
    images: torch.Tensor | None = None  # held-out images (B, C, H, W) for completions and NLL maps
    labels: torch.Tensor | None = None
    images_source: str = ""
    class_names: Sequence[str] | None = None


def write_report(
    model,
    info: RunInfo,
    out: str | os.PathLike,
    *,
    num_samples: int = 16,
    num_completions: int = 4,
    seed: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write ``out`` (a .md file), its pictures in ``<stem>_files/`` and a self-contained ``<stem>.html``.

    ``progress``: a bar over the stages (samples, completions and NLL maps, receptive field); default: on a
    terminal."""
    out = Path(out)
    if out.suffix != ".md":
        raise ValueError(f"the report must be a .md file, got {str(out)!r}")
    files = out.parent / f"{out.stem}_files"
    c, h, w = model.image_shape
    k = model.num_levels
    scale = viz.auto_scale(h, w, 64)
    started = time.perf_counter()
    sections: list[tuple[str, list[str | tuple[str, Path]]]] = []  # (heading, [text or (caption, picture)])

    facts = dict(info.facts)
    facts.update({"model": model.model_name, "image shape": f"{c}x{h}x{w}", "levels": k})
    facts["parameters"] = f"{sum(p.numel() for p in model.parameters()):,}"
    facts["generation order"] = explain.describe_order(model)

    curves = read_curves(info.metrics)
    for split, cv in curves.items():
        if cv["bpd"]:
            facts[f"last {split} bits/dim (step {int(cv['step'][-1])})"] = f"{cv['bpd'][-1]:.4f}"
    if curves:
        path = viz.plot_curves(curves, files / "curves.png", title=info.title)
        sections.append(("Training curves", [("bits/dim vs step and vs wall-clock time", path)]))

    bar = tqdm(total=3, desc="report", disable=None if progress is None else not progress, leave=False)
    gen = torch.Generator().manual_seed(seed)
    if model.num_classes:
        per_class = max(1, min(8, num_samples // 2))
        samples = viz.class_samples(model, per_class, generator=gen)
        path = viz.save_class_grid(samples, files / "classes.png", k, labels=info.class_names, scale=scale)
        sections.append(("Class-conditional samples", [(f"one row per class, seed {seed}", path)]))
    else:
        samples = model.sample(num_samples, generator=gen)
        path = viz.save_grid(samples, files / "samples.png", k, nrow=8, scale=scale, padding=2)
        sections.append(("Samples", [(f"{num_samples} samples, seed {seed}, temperature 1", path)]))

    bar.update()
    if info.images is not None:
        images = info.images[:4].long()
        cond = None if info.labels is None or not model.num_classes else info.labels[:4]
        nll = explain.nll_map(model, images, cond)
        bpd = nll.sum() / (len(images) * c * h * w)
        facts[f"bits/dim of the {len(images)} {info.images_source} images shown"] = f"{bpd:.4f}"
        completions, mask = viz.complete(model, images, num_completions, 0.5, cond, generator=gen)
        path_c = viz.save_completion_grid(images, completions, mask, files / "completions.png", k, scale=scale)
        path_n = viz.save_nll_map(images, nll, files / "nll_map.png", k)
        sections.append(
            ("Completions", [(f"top half of {info.images_source} images given, {num_completions} completions", path_c)])
        )
        sections.append(("Where the model is surprised", [("per-pixel NLL in bits (all channels)", path_n)]))

    bar.update()
    position = (h // 2, w // 2)
    magnitude = explain.receptive_field(model, position)
    context = explain.context_mask(model, position)
    path = viz.save_receptive_field(
        magnitude, context, rank_map(model.order(), c, h, w), position, 0, files / "receptive_field.png"
    )
    field_text = str(explain.summarize_field(magnitude, context, position))
    sections.append(("Receptive field", [(f"channel 0 at {position}: {field_text}", path)]))
    bar.update()
    bar.close()
    if info.config is not None:
        sections.append(("Config", ["```json\n" + json.dumps(info.config, indent=2, sort_keys=True) + "\n```"]))

    log.info("report pictures took %.1f s", time.perf_counter() - started)
    markdown = _markdown(info.title, facts, sections, out.parent)
    write_bytes_atomic(markdown.encode(), out)
    write_bytes_atomic(_html(info.title, facts, sections).encode(), out.with_suffix(".html"))
    return out


def _markdown(title: str, facts: dict, sections, root: Path) -> str:
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines.append("")
    for heading, items in sections:
        lines += [f"## {heading}", ""]
        for item in items:
            if isinstance(item, tuple):
                caption, path = item
                lines += [f"![{caption}]({path.relative_to(root).as_posix()})", "", f"*{caption}*", ""]
            else:
                lines += [item, ""]
    return "\n".join(lines).rstrip() + "\n"


def _html(title: str, facts: dict, sections) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td{padding:2px 10px}"
        "img{image-rendering:pixelated;max-width:100%}pre{background:#f4f4f4;padding:1em}</style></head><body>",
        f"<h1>{esc(title)}</h1><table>",
    ]
    parts += [f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in facts.items()]
    parts.append("</table>")
    for heading, items in sections:
        parts.append(f"<h2>{esc(heading)}</h2>")
        for item in items:
            if isinstance(item, tuple):
                caption, path = item
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}'><figcaption>{esc(caption)}</figcaption>")
                parts.append("</figure>")
            else:
                parts.append(f"<pre>{esc(item.strip('`').removeprefix('json'))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----- from a run directory ---------------------------------------------------------------------------------
def report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    num_samples: int = 16,
    seed: int = 0,
    split: str = "test",
    which: str = "best",
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the results page of a run: ``RUN/report.md`` (+ ``report_files/``) and ``RUN/report.html``.

    Reads ``config.json``, ``metrics.jsonl``, ``results.json`` and the ``which`` checkpoint; takes four
    ``split`` images of the run's data set for completions and NLL maps (skipped, with a note, when the data
    set cannot be loaded here; an unknown ``split`` is a ValueError). ``data_dir`` overrides the run's.
    """
    import pixelmodels
    from pixelmodels.data.dataset import parse_split

    parse_split(split)  # a typo is an error, not a report without completions
    run_dir = _check_run_dir(run_dir)
    model = pixelmodels.load_checkpoint(run_dir, which=which)
    config = _read_json(run_dir / "config.json")
    info = RunInfo(title=f"Run {run_dir.name}", config=config)
    if (run_dir / "metrics.jsonl").is_file():
        info.metrics = read_metrics(run_dir / "metrics.jsonl")
    results = _read_json(run_dir / "results.json") or {}
    if isinstance(results.get("test"), dict) and "bits_per_dim" in results["test"]:
        info.facts["test bits/dim (best checkpoint)"] = f"{results['test']['bits_per_dim']:.4f}"
    for key, label in [("best_valid_bits_per_dim", "best validation bits/dim"), ("best_step", "best step"),
                       ("steps", "steps trained"), ("train_time_s", "training time (s)")]:  # fmt: skip
        if key in results:
            value = results[key]
            info.facts[label] = f"{value:.4f}" if isinstance(value, float) and "bits" in label else value
    if isinstance(info.facts.get("training time (s)"), float):
        info.facts["training time (s)"] = f"{info.facts['training time (s)']:.1f}"
    if config and isinstance(config.get("data"), dict):
        info.facts["data set"] = config["data"].get("dataset")
        try:
            ds = run_dataset(config, split, data_dir)
            idx = spread(len(ds), 4)
            info.images, info.images_source = ds.images[idx], f"{ds.name} {split}"
            info.labels = None if ds.labels is None else ds.labels[idx]
            if ds.class_names and model.num_classes == len(ds.class_names):
                info.class_names = ds.class_names
        except (ValueError, FileNotFoundError) as err:
            log.warning("no held-out images for the report: %s", err)
            info.facts["completions and NLL maps"] = f"skipped: {err}"
    return write_report(model, info, out or run_dir / "report.md", num_samples=num_samples, seed=seed)


def spread(total: int, n: int) -> torch.Tensor:
    """``n`` indices spread evenly over ``range(total)`` (first and last included): a few images that are not
    all alike when a split is sorted (binarized MNIST is ordered by digit)."""
    if total < 1:
        raise ValueError("the split has no images")
    n = min(n, total)
    return torch.linspace(0, total - 1, n).round().long().unique()


def run_dataset(config: dict | None, split: str, data_dir: str | os.PathLike | None = None):
    """The ``split`` of a run's data set, as its config (``config.json``) describes it (``data_dir``: elsewhere)."""
    if not config or not isinstance(config.get("data"), dict) or "dataset" not in config["data"]:
        raise ValueError("the run has no data config (config.json) to take images from")
    from pixelmodels.data import load_dataset

    data = config["data"]
    return load_dataset(
        data["dataset"], split, data_dir=data_dir or data.get("data_dir"), num_levels=data.get("num_levels"),
        **data.get("options", {}),
    )  # fmt: skip


def read_run_config(run_dir: str | os.PathLike) -> dict | None:
    return _read_json(Path(run_dir) / "config.json")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
