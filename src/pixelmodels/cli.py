"""The ``pixelmodels`` command line (DESIGN.md section 6). ``python -m pixelmodels`` is the same program."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from pixelmodels.cli_codec import add_commands as add_codec_commands
from pixelmodels.cli_common import (
    ArgumentParser,
    check_class_flag,
    check_grid_size,
    check_output_path,
    device_arg,
    error_message,
    float_range,
    int_range,
    positive_int,
    seed_int,
)
from pixelmodels.cli_viz import add_commands as add_viz_commands
from pixelmodels.registry import available_models, get_model_class, hyperparameters
from pixelmodels.training.trainer import NonFiniteLossError, TrainingInterrupted


def cmd_models(args: argparse.Namespace) -> int:
    for name in available_models():
        cls = get_model_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:18s} {summary}")
        if args.verbose:
            for key, default in hyperparameters(cls).items():
                print(f"    {key} = {default!r}")
            if isinstance(getattr(cls, "widths", None), property):  # what hidden_channels means for this model
                widths = cls(image_shape=(3, 8, 8), num_levels=256).widths
                print("    widths at the defaults: " + ", ".join(f"{k} = {v}" for k, v in widths.items()))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from pixelmodels.data import download_dataset

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per file fetched
    print(download_dataset(args.name, args.data_dir))
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
    from pixelmodels import __version__

    parser = ArgumentParser(
        prog="pixelmodels",
        description="Train, evaluate, sample, complete and compress images with exact-likelihood "
        "autoregressive models. Every command, its flags and exit codes: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"pixelmodels {__version__}")
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
    p = sub.add_parser(
        "download",
        help="fetch a data set from its official URL",
        description="Fetch mnist, binarized_mnist or cifar10 from its official URL into the data directory, "
        "checking every file's SHA-256 (a file that fails is deleted, nothing partial is left), then load each "
        "split once. photographs, kodak, folder and npz have no official download: it says where their files go.",
    )
    p.add_argument("name", help="data set name (see `pixelmodels datasets`)")
    p.add_argument("--data-dir", help="data directory (default: $PIXELMODELS_DATA, else ~/.cache/pixelmodels)")
    p.set_defaults(func=cmd_download)
    add_training_commands(sub)
    add_codec_commands(sub)  # compress, decompress (cli_codec.py)
    add_viz_commands(sub)  # inspect, nll-map, plot, report
    return parser


# ----- train / evaluate / sample / complete / presets (DESIGN.md sections 5-6) ---------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from pixelmodels.training import RunConfig, apply_overrides, get_preset, train
    from pixelmodels.training.rundir import resume_config

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    overrides = list(args.set or [])
    if args.resume:
        config = resume_config(args.out)  # config.json, else the copy in checkpoints/last.json
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
        overrides.append(f"data.data_dir={Path(args.data_dir).expanduser().resolve()}")
    if args.stage is not None:  # a staged model (models/stages.py): train one stage; join them with `compose`
        overrides.append(f"model.train_stage={args.stage}")
    config = apply_overrides(config, overrides)
    if args.download:  # fetch (and verify) the data before anything else is done
        from pixelmodels.data import download_dataset

        print(download_dataset(config.data.dataset, config.data.data_dir), file=sys.stderr)
    try:
        run_dir = train(
            config, args.out, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after, progress=None
        )
    except TrainingInterrupted as stopped:
        print(f"pixelmodels train: {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C, or one during data loading or the final test scoring
        print(f"pixelmodels train: interrupted; the last checkpoint is kept, continue with: "
              f"pixelmodels train --out {args.out} --resume", file=sys.stderr)  # fmt: skip
        return 130
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


def cmd_compose(args: argparse.Namespace) -> int:
    from pixelmodels.training.compose import compose_runs, evaluate_stages

    out = compose_runs(args.first_run, args.rest_run, args.out, overwrite=args.overwrite)
    result = {"run": str(out)}
    if args.split != "none":
        result |= {"split": args.split, "bits_per_dim": evaluate_stages(out, args.split)}
    print(json.dumps(result))
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
    if args.images:
        return _evaluate_images(args, model, meta, data_dir)
    name, options = d.dataset, d.options
    if args.dataset is not None:  # another data set of the same kind, e.g. kodak patches for a photographs run
        from pixelmodels.data import dataset_info

        accepted = dataset_info(args.dataset, data_dir)["options"]
        name, options = args.dataset, {k: v for k, v in d.options.items() if k in accepted and k != "download"}
    dataset = load_dataset(name, args.split, data_dir=data_dir, num_levels=d.num_levels, **options)
    if dataset.image_shape != model.image_shape or dataset.num_levels != model.num_levels:
        raise ValueError(
            f"{name}/{args.split} has images {dataset.image_shape} with {dataset.num_levels} levels; "
            f"the model takes {model.image_shape} with {model.num_levels}"
        )
    result = dataset_nll(model, dataset.images, dataset.labels, args.batch_size, progress=sys.stderr.isatty())
    if not math.isfinite(result.bits_per_dim):
        raise NonFiniteLossError(
            f"the {args.checkpoint} checkpoint of {args.run} gives a non-finite NLL ({result.bits_per_dim}) on "
            f"{name}/{args.split}: its weights are not usable"
        )
    out = {**result.to_dict(), "split": args.split, "dataset": name, "step": meta["step"],
           "checkpoint": args.checkpoint, "weights": args.weights}  # fmt: skip
    print(json.dumps(out, allow_nan=False))
    return 0


def _evaluate_images(args: argparse.Namespace, model, meta: dict, data_dir) -> int:
    """``evaluate --images``: exact bits per sub-pixel over whole images (a named set's split, or files)."""
    from pixelmodels.data import dataset_images, load_images, quantize
    from pixelmodels.evaluate import images_nll

    if len(args.images) == 1 and args.images[0] in ("kodak", "photographs"):
        source = f"{args.images[0]}/{args.split}"
        images = dataset_images(args.images[0], args.split, data_dir)
    else:
        source, images = "files", load_images(args.images)
    if model.image_shape[0] != 3:
        raise ValueError(f"whole images are RGB; the model in {args.run} takes {model.image_shape[0]} channel(s)")
    images = [quantize(x[None], 256, model.num_levels)[0] for x in images]
    result = images_nll(model, images, args.band_rows, progress=sys.stderr.isatty())
    out = {**result.to_dict(), "images": source, "step": meta["step"], "checkpoint": args.checkpoint,
           "weights": args.weights}  # fmt: skip
    print(json.dumps(out))
    return 0


def _load_for_sampling(args: argparse.Namespace):
    import torch

    from pixelmodels.training import load_checkpoint

    model = load_checkpoint(args.run, args.checkpoint, args.weights, args.device)
    check_class_flag(model, args.class_label)
    if args.method == "fast" and not model.supports_fast_sampling:
        raise ValueError(f"--method fast: {model.model_name!r} has no fast sampler; use --method naive or auto")
    generator = torch.Generator(args.device).manual_seed(args.seed)
    return model, generator


def cmd_sample(args: argparse.Namespace) -> int:
    from pixelmodels.viz import save_grid

    check_output_path(args.out)
    check_grid_size(args.n, "-n")
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
    pixelmodels wrote back to their exact levels); a size other than the model's is an ImageFileError."""
    from pixelmodels.imagefiles import ImageFileError, open_image
    from pixelmodels.viz import load_image

    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"reading image files needs a 1- or 3-channel model, this one has {c} channels")
    size = open_image(path).size
    if size != (w, h):
        raise ImageFileError(f"image {path} is {size[0]}x{size[1]} pixels; the model takes {w}x{h}")
    return load_image(path, image_shape, num_levels)


def cmd_complete(args: argparse.Namespace) -> int:

    from pixelmodels.viz import keep_top_mask, save_completion_grid

    check_output_path(args.out)
    check_grid_size(args.n, "-n")
    model, generator = _load_for_sampling(args)
    image = read_image(args.image, model.image_shape, model.num_levels)  # (C, H, W)
    known_mask = keep_top_mask(model.image_shape, args.keep_top)  # (C, H, W) bool
    completions = model.sample(
        args.n, cond=args.class_label, known=image.to(args.device), known_mask=known_mask.to(args.device),
        temperature=args.temperature, generator=generator, method=args.method, progress=sys.stderr.isatty(),
    )  # fmt: skip
    c, h, w = model.image_shape
    path = save_completion_grid(
        image[None], completions.cpu()[None], known_mask, args.out, model.num_levels, scale=max(1, math.ceil(32 / h))
    )
    rows = int(known_mask[0, :, 0].sum())
    print(f"wrote the top {rows} rows given (the rest tinted), {args.n} completions and the input to {path}")
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
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace the pixelmodels run in --out (the old run is kept until the new one has a checkpoint)",
    )  # fmt: skip
    p.add_argument(
        "--stop-after", type=positive_int, metavar="STEP", help="pause at this step (checkpoint saved); resume later"
    )
    p.add_argument(
        "--download", action="store_true",
        help="first fetch the data set from its official URL (mnist, binarized_mnist, cifar10; SHA-256 checked)",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log progress lines")
    p.add_argument(
        "--stage", choices=["first", "rest"],
        help="for a 'staged' model: train only this stage's term (then join two runs with `pixelmodels compose`)",
    )  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "compose", help="join the stages of two 'staged' runs into one model",
        description="Take the first stage from FIRST_RUN and the rest stage from REST_RUN (both trained from one "
        "staged config with --stage first / --stage rest) and write one run whose log_prob is their exact sum; "
        "prints each stage's test bits/dim.",
    )  # fmt: skip
    p.add_argument("first_run", help="run trained with --stage first")
    p.add_argument("rest_run", help="run trained with --stage rest")
    p.add_argument("--out", required=True, help="the composed run directory")
    p.add_argument("--overwrite", action="store_true", help="replace what is in --out")
    p.add_argument("--split", default="test", help="split to report each stage's bits/dim on (none: skip)")
    p.set_defaults(func=cmd_compose)

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="a run directory (or a checkpoint JSON file)")
        p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint (best)")
        p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA (default) or raw weights")
        p.add_argument("--device", type=device_arg, default="cpu", help="torch device: cpu, cuda, cuda:N, mps (cpu)")

    p = sub.add_parser(
        "evaluate", help="exact NLL and bits/dim of a run on a split (JSON)",
        description="Exact negative log-likelihood of a trained run on a data split; one JSON line on stdout "
        "with nll_nats (per image), bits_per_dim, num_images and split.",
    )  # fmt: skip
    run_options(p)
    p.add_argument("--split", default="test", help="train, valid or test (default test)")
    p.add_argument("--dataset", help="score another data set with the run's options, e.g. kodak (patches)")
    p.add_argument(
        "--images", nargs="+", metavar="IMAGE",
        help="score whole images instead of patches: 'kodak', 'photographs' (its --split) or image files; "
        "prints bits_per_dim over all sub-pixels (models whose weights depend on the image size are refused)",
    )  # fmt: skip
    p.add_argument("--band-rows", type=positive_int, help="rows per band for --images (default: ~65k pixels a band)")
    p.add_argument("--data-dir", help="where the data files are (default: the run's, else $PIXELMODELS_DATA)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass (default 256)")
    p.set_defaults(func=cmd_evaluate)

    def sampling_options(p: argparse.ArgumentParser, default_n: int) -> None:
        p.add_argument(
            "-n", type=positive_int, default=default_n, help=f"number of images, at most 1024 (default {default_n})"
        )
        p.add_argument("--out", required=True, help="output PNG grid")
        p.add_argument("--seed", type=seed_int, default=0, help="random seed: same seed, same images (default 0)")
        p.add_argument(
            "--class", dest="class_label", type=int_range(0), help="class label, for class-conditional models"
        )
        p.add_argument(
            "--temperature", type=float_range(0.0, low_inclusive=False), default=1.0,
            help="divides the logits; < 1 is more conservative (default 1)",
        )  # fmt: skip
        p.add_argument(
            "--method",
            choices=["auto", "naive", "fast", "fixed_point"],
            default="auto",
            help="sampler: naive (full network per step), fast (cached), fixed_point (parallel Jacobi iterations, "
            "same images as naive); auto: fast when the model has one (default)",
        )

    p = sub.add_parser("sample", help="draw samples from a run into a PNG grid", description="Draw samples.")
    run_options(p)
    sampling_options(p, 64)
    p.add_argument("--nrow", type=positive_int, help="images per grid row (default: square)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "complete", help="complete the bottom of an image",
        description="Keep the top rows of an image and sample the rest. The grid is labelled: the given part "
        "(the hidden rows tinted orange), the completions, then the input.",
    )  # fmt: skip
    run_options(p)
    p.add_argument(
        "--image", required=True, help="a PNG/JPEG of the model's size; converted to its channels and levels"
    )
    p.add_argument(
        "--keep-top", type=float_range(0.0, 1.0, high_inclusive=False), default=0.5,
        help="fraction of rows given from the top, in [0, 1) (default 0.5)",
    )  # fmt: skip
    sampling_options(p, 8)
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("presets", help="list the training presets", description="List the training presets.")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each preset's full config")
    p.set_defaults(func=cmd_presets)


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit status 2, Ctrl-C exit status 130 (docs/cli.md)."""
    import torch

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a one-line argument error (ArgumentParser.error)
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.func(args)
    except (ValueError, OSError, NonFiniteLossError, MemoryError, torch.OutOfMemoryError) as err:
        print(f"pixelmodels {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixelmodels {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
