"""The ``pixelmodels`` command line (DESIGN.md section 6). ``python -m pixelmodels`` is the same program."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pixelmodels.cli_codec import add_commands as add_codec_commands
from pixelmodels.cli_viz import add_commands as add_viz_commands
from pixelmodels.registry import available_models, get_model_class, hyperparameters
from pixelmodels.training.trainer import NonFiniteLossError


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
    add_training_commands(sub)
    add_codec_commands(sub)  # compress, decompress (cli_codec.py)
    add_viz_commands(sub)  # inspect, nll-map, plot, report
    return parser


# ----- train / evaluate / sample / complete / presets (DESIGN.md sections 5-6) ---------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from pixelmodels.training import RunConfig, apply_overrides, get_preset, train

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    overrides = list(args.set or [])
    if args.resume:
        config_path = Path(args.out) / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"nothing to resume in {args.out}: no config.json")
        config = RunConfig.from_dict(json.loads(config_path.read_text()))
        for flag, key, saved in (
            ("--model", "model.name", config.model.name),
            ("--dataset", "data.dataset", config.data.dataset),
        ):
            given = getattr(args, flag[2:])
            if given is not None and given != saved:
                raise ValueError(f"{flag} {given} does not match the run being resumed ({key}={saved})")
        if args.preset is not None and args.preset != config.preset:
            raise ValueError(f"--preset {args.preset} does not match the run being resumed (preset={config.preset})")
    else:
        config = get_preset(args.preset) if args.preset else RunConfig()
        if args.model is not None:
            overrides.insert(0, f"model.name={args.model}")
        if args.dataset is not None:
            from pixelmodels.data import available_datasets

            if args.dataset not in available_datasets():
                raise ValueError(f"unknown data set {args.dataset!r}; available: {', '.join(available_datasets())}")
            overrides.insert(0, f"data.dataset={args.dataset}")
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    config = apply_overrides(config, overrides)
    run_dir = train(
        config, args.out, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after, progress=None
    )
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports; the others only trained
        return 0
    results_path = run_dir / "results.json"
    last = json.loads((run_dir / "checkpoints" / "last.json").read_text())
    if last["step"] < config.train.steps:
        print(f"paused at step {last['step']} of {config.train.steps}; continue with: "
              f"pixelmodels train --out {run_dir} --resume")  # fmt: skip
        return 0
    results = json.loads(results_path.read_text())
    test = results["test"]
    print(
        f"test {test['bits_per_dim']:.4f} bits/dim ({test['nll_nats']:.2f} nats/image, {test['num_images']} images; "
        f"best step {results['best_step']}, {results['train_time_s']:.0f} s training); "
        f"samples: {run_dir / 'samples.png'}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pixelmodels.data import load_dataset
    from pixelmodels.evaluate import dataset_nll
    from pixelmodels.training import checkpoint as ckpt
    from pixelmodels.training.config import RunConfig

    meta, tensors = ckpt.read_checkpoint(args.run, args.checkpoint)
    model = ckpt.model_from_checkpoint(meta, tensors, args.weights, str(args.run)).to(args.device)
    d = RunConfig.from_dict(meta["config"]).data
    data_dir = args.data_dir if args.data_dir is not None else d.data_dir
    dataset = load_dataset(d.dataset, args.split, data_dir=data_dir, num_levels=d.num_levels, **d.options)
    if dataset.image_shape != model.image_shape or dataset.num_levels != model.num_levels:
        raise ValueError(
            f"{d.dataset}/{args.split} has images {dataset.image_shape} with {dataset.num_levels} levels; "
            f"the model takes {model.image_shape} with {model.num_levels}"
        )
    result = dataset_nll(model, dataset.images, dataset.labels, args.batch_size, progress=sys.stderr.isatty())
    out = {**result.to_dict(), "split": args.split, "dataset": d.dataset, "step": meta["step"],
           "checkpoint": args.checkpoint, "weights": args.weights}  # fmt: skip
    print(json.dumps(out))
    return 0


def _load_for_sampling(args: argparse.Namespace):
    import torch

    from pixelmodels.training import load_checkpoint

    model = load_checkpoint(args.run, args.checkpoint, args.weights, args.device)
    if args.class_label is not None and model.num_classes is None:
        raise ValueError(
            f"--class needs a class-conditional model; {model.model_name!r} in {args.run} is unconditional"
        )
    generator = torch.Generator(args.device).manual_seed(args.seed)
    return model, generator


def cmd_sample(args: argparse.Namespace) -> int:
    from pixelmodels.viz import save_grid

    model, generator = _load_for_sampling(args)
    images = model.sample(
        args.n, cond=args.class_label, temperature=args.temperature, generator=generator, method=args.method,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    path = save_grid(images, args.out, model.num_levels, nrow=args.nrow)
    print(f"wrote {args.n} samples to {path}")
    return 0


def read_image(path: str | Path, image_shape: tuple[int, int, int], num_levels: int):
    """An image file -> (C, H, W) integer levels for a model, via ``viz.load_image`` (which also maps pictures
    pixelmodels wrote back to their exact levels); a size other than the model's is a ValueError."""
    from PIL import Image, UnidentifiedImageError

    from pixelmodels.viz import load_image

    c, h, w = image_shape
    try:
        with Image.open(path) as img:
            size = img.size
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    if c not in (1, 3):
        raise ValueError(f"reading image files needs a 1- or 3-channel model, this one has {c} channels")
    if size != (w, h):
        raise ValueError(f"image {path} is {size[0]}x{size[1]} pixels; the model takes {w}x{h}")
    return load_image(path, image_shape, num_levels)


def cmd_complete(args: argparse.Namespace) -> int:
    import torch

    from pixelmodels.viz import save_grid

    if not 0.0 <= args.keep_top <= 1.0:
        raise ValueError(f"--keep-top must be a fraction in [0, 1], got {args.keep_top}")
    model, generator = _load_for_sampling(args)
    image = read_image(args.image, model.image_shape, model.num_levels).to(args.device)  # (C, H, W)
    rows = round(args.keep_top * model.image_shape[1])
    known_mask = torch.zeros_like(image, dtype=torch.bool)
    known_mask[:, :rows] = True
    completions = model.sample(
        args.n, cond=args.class_label, known=image, known_mask=known_mask, temperature=args.temperature,
        generator=generator, method=args.method, progress=sys.stderr.isatty(),
    )  # fmt: skip
    shown = torch.stack([image, image * known_mask])  # the input, then what the model was given
    path = save_grid(torch.cat([shown, completions]), args.out, model.num_levels, nrow=args.n + 2)
    print(f"wrote the input, its top {rows} rows and {args.n} completions to {path}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from pixelmodels.training import PRESETS, get_preset

    for name, preset in PRESETS.items():
        print(f"{name:28s} {preset.description}")
        if args.verbose:
            print("    " + get_preset(name).to_json().replace("\n", "\n    "))
    return 0


def add_training_commands(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model; prints test bits/dim at the end",
        description="Train a model into a run directory (config.json, checkpoints/, metrics.jsonl, samples/). "
        "Start from a preset or from --model/--dataset with defaults, then adjust with --set.",
    )
    p.add_argument("--preset", help="start from a named preset (see `pixelmodels presets`)")
    p.add_argument("--model", help="model name (see `pixelmodels models`); sets model.name")
    p.add_argument("--dataset", help="data set name; sets data.dataset")
    p.add_argument("--data-dir", help="where the data files are (default: $PIXELMODELS_DATA)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override one config value, e.g. optim.lr=3e-4, train.steps=2000, model.hidden_channels=32 (repeatable)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--stop-after", type=int, metavar="STEP", help="pause at this step (checkpoint saved); resume later")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress lines")
    p.set_defaults(func=cmd_train)

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="a run directory (or a checkpoint JSON file)")
        p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint (best)")
        p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA (default) or raw weights")
        p.add_argument("--device", default="cpu", help="torch device (cpu)")

    p = sub.add_parser(
        "evaluate", help="exact NLL and bits/dim of a run on a split (JSON)",
        description="Exact negative log-likelihood of a trained run on a data split; one JSON line on stdout "
        "with nll_nats (per image), bits_per_dim, num_images and split.",
    )  # fmt: skip
    run_options(p)
    p.add_argument("--split", default="test", help="train, valid or test (default test)")
    p.add_argument("--data-dir", help="where the data files are (default: the run's, else $PIXELMODELS_DATA)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.set_defaults(func=cmd_evaluate)

    def sampling_options(p: argparse.ArgumentParser, default_n: int) -> None:
        p.add_argument("-n", type=int, default=default_n, help=f"number of images (default {default_n})")
        p.add_argument("--out", required=True, help="output PNG grid")
        p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same images (default 0)")
        p.add_argument("--class", dest="class_label", type=int, help="class label, for class-conditional models")
        p.add_argument("--temperature", type=float, default=1.0, help="divides the logits; < 1 is more conservative")
        p.add_argument("--method", choices=["auto", "naive", "fast"], default="auto", help="sampler (auto)")

    p = sub.add_parser("sample", help="draw samples from a run into a PNG grid", description="Draw samples.")
    run_options(p)
    sampling_options(p, 64)
    p.add_argument("--nrow", type=int, help="images per grid row (default: square)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "complete", help="complete the bottom of an image",
        description="Keep the top rows of an image and sample the rest; the grid shows the input, the kept "
        "part, then the completions.",
    )  # fmt: skip
    run_options(p)
    p.add_argument(
        "--image", required=True, help="a PNG/JPEG of the model's size; converted to its channels and levels"
    )
    p.add_argument("--keep-top", type=float, default=0.5, help="fraction of rows kept from the top (default 0.5)")
    sampling_options(p, 8)
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("presets", help="list the training presets", description="List the training presets.")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each preset's full config")
    p.set_defaults(func=cmd_presets)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NonFiniteLossError) as err:
        print(f"pixelmodels {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
