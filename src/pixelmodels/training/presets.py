"""Named presets: plain data, each entry says why its values are what they are.

A preset is a partial :class:`~pixelmodels.training.config.RunConfig` as nested dicts; everything it does
not set keeps the dataclass default. ``pixelmodels presets`` lists them; ``--set key=value`` adjusts one.
A model helper adds its presets as new entries at the end of ``PRESETS``.

Numbers quoted from the papers are test-set negative log-likelihoods (nats for binarized MNIST, bits/dim
otherwise).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from pixelmodels.training.config import RunConfig


class Preset(NamedTuple):
    description: str
    config: dict


PRESETS: dict[str, Preset] = {
    # The README's first command. digits (8x8, 17 levels, shipped inside scikit-learn) needs no download; a
    # PixelCNN this small (~60k parameters) trains in about two minutes on 2 CPU cores and lands well below
    # the uniform baseline of log2(17) = 4.09 bits/dim (measured numbers in docs/training.md).
    # 7x7 -> 5x5 first kernel: on an 8x8 image the paper's 7x7 mask-A kernel mostly covers padding.
    # EMA decay 0.995: only ~1500 steps, so a shorter averaging window than the usual 0.999.
    # num_threads 1: on 8x8 images a batch is too small to split; on our shared 2-core machine 2 threads made a
    # step 10x slower (0.55 s vs 0.054 s) from thread contention.
    "quickstart": Preset(
        "small PixelCNN on digits (8x8, 17 levels): about 2 minutes on 2 CPU cores",
        {
            "model": {
                "name": "pixelcnn",
                "hparams": {"hidden_channels": 32, "num_layers": 4, "first_kernel_size": 5},
            },
            "data": {"dataset": "digits", "batch_size": 32},
            "optim": {"lr": 3e-3, "warmup_steps": 100, "schedule": "cosine", "ema_decay": 0.995},
            "train": {
                "steps": 1500,
                "log_every": 50,
                "eval_every": 250,
                "sample_every": 500,
                "checkpoint_every": 250,
                "num_threads": 1,
            },
        },
    ),
    # PixelRNN paper (van den Oord et al. 2016), Table 4: PixelCNN 81.30 nats on binarized MNIST.
    # The paper's section 5 gives the MNIST recurrent models 7 layers with h=16 and trains with batch 16; we
    # use the same depth and width for the PixelCNN. 3125 steps = one epoch of the 50k training images.
    "pixelcnn-binarized-mnist": Preset(
        "PixelCNN on binarized MNIST (PixelRNN paper: 81.30 nats)",
        {
            "model": {"name": "pixelcnn", "hparams": {"hidden_channels": 16, "num_layers": 7}},
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 1e-3, "warmup_steps": 500, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # PixelRNN paper, Table 5: PixelCNN 3.14 bits/dim on CIFAR-10 test. Section 5: 15 layers, h=128 features
    # (the residual blocks carry 2h = 256), 1024 maps in the 1x1 output layers, 256-way softmax, batch 16.
    # Needs a GPU: ~3 s/step on 2 CPU cores. precision bf16: autocast on GPU, the likelihood stays float32.
    "pixelcnn-cifar10": Preset(
        "PixelCNN on CIFAR-10 (PixelRNN paper: 3.14 bits/dim); GPU",
        {
            "model": {
                "name": "pixelcnn",
                "hparams": {"hidden_channels": 128, "num_layers": 15, "output_channels": 1024},
            },
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 3e-4, "warmup_steps": 1000, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {
                "steps": 500_000,
                "eval_every": 10_000,
                "sample_every": 10_000,
                "checkpoint_every": 5000,
                "num_samples": 16,
                "precision": "bf16",
            },
        },
    ),
    # PixelCNN++ paper (Salimans et al. 2017): 2.92 bits/dim on CIFAR-10 test. openai/pixel-cnn train.py
    # defaults: nr_resnet 5 (blocks per stage), nr_filters 160, nr_logistic_mix 10, dropout 0.5; Adam lr 1e-3
    # with beta1 0.95, beta2 0.9995, lr x 0.999995 every step, Polyak averaging 0.9995, batch 12 per GPU on
    # 8 GPUs (96), no gradient clipping. No exponential schedule here: cosine down to 0.08 * lr over 500k steps
    # ends where the reference's decay is after 500k steps (0.999995^500000 = 0.082). 53.6M parameters; GPU.
    "pixelcnn_pp-cifar10": Preset(
        "PixelCNN++ on CIFAR-10 (paper: 2.92 bits/dim); GPU",
        {
            "model": {
                "name": "pixelcnn_pp",
                "hparams": {
                    "hidden_channels": 160,
                    "num_layers": 5,
                    "num_resolutions": 3,
                    "num_mixtures": 10,
                    "dropout": 0.5,
                },
            },
            "data": {"dataset": "cifar10", "batch_size": 96, "max_eval_images": 2000},
            "optim": {
                "lr": 1e-3,
                "beta1": 0.95,
                "beta2": 0.9995,
                "schedule": "cosine",
                "min_lr_ratio": 0.08,
                "grad_clip": None,
                "ema_decay": 0.9995,
            },
            "train": {
                "steps": 500_000,
                "eval_every": 10_000,
                "sample_every": 10_000,
                "checkpoint_every": 5000,
                "num_samples": 16,
                "precision": "bf16",
            },
        },
    ),
    # Small PixelCNN++ for CPU on the offline photos set (16x16 RGB patches): the F=32 model of
    # benchmarks/pixelcnn_pp.py (4.90 test bits/dim after 300 steps there, docs/benchmarks.md), ~1M parameters,
    # ~15 images/s on one core. Dropout 0: a few thousand steps on 1664 patches do not overfit.
    # num_threads 1: on the shared 2-core machine 2 threads made small convolutions ~100x slower.
    "pixelcnn_pp-photos": Preset(
        "small PixelCNN++ on photos (16x16 RGB): CPU",
        {
            "model": {
                "name": "pixelcnn_pp",
                "hparams": {"hidden_channels": 32, "num_layers": 2, "num_mixtures": 5, "dropout": 0.0},
            },
            "data": {"dataset": "photos", "batch_size": 16, "options": {"size": 16}},
            "optim": {"lr": 2e-3, "warmup_steps": 100, "schedule": "cosine", "ema_decay": 0.995},
            "train": {
                "steps": 3000,
                "eval_every": 500,
                "sample_every": 1000,
                "checkpoint_every": 500,
                "num_threads": 1,
            },
        },
    ),
    # PixelRNN paper, section 5 / Table 4: Diagonal BiLSTM with 7 layers of h=16 units reaches 79.20 nats on
    # binarized MNIST (values as recorded in models/pixelrnn.py PAPER_CONFIGS; the paper text was not at hand to
    # re-check). Same optimisation as pixelcnn-binarized-mnist so the two compare. Slow on a CPU (~4 images/s).
    "diagonal_bilstm-binarized-mnist": Preset(
        "Diagonal BiLSTM on binarized MNIST (PixelRNN paper: 79.20 nats); GPU",
        {
            "model": {"name": "diagonal_bilstm", "hparams": {"hidden_channels": 16, "num_layers": 7}},
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 1e-3, "warmup_steps": 500, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # The paper reports no Row LSTM on MNIST: this uses the Diagonal BiLSTM's 7 layers of h=16 so they compare.
    "row_lstm-binarized-mnist": Preset(
        "Row LSTM on binarized MNIST (no paper number; same size as the Diagonal BiLSTM preset); GPU",
        {
            "model": {"name": "row_lstm", "hparams": {"hidden_channels": 16, "num_layers": 7}},
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 1e-3, "warmup_steps": 500, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # PixelRNN paper, Table 5: 12 layers, h=128: Row LSTM 3.07, Diagonal BiLSTM 3.00 bits/dim on CIFAR-10.
    "row_lstm-cifar10": Preset(
        "Row LSTM on CIFAR-10 (PixelRNN paper: 3.07 bits/dim); GPU",
        {
            "model": {"name": "row_lstm", "hparams": {"hidden_channels": 128, "num_layers": 12}},
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 3e-4, "warmup_steps": 1000, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {
                "steps": 500_000,
                "eval_every": 10_000,
                "sample_every": 10_000,
                "checkpoint_every": 5000,
                "num_samples": 16,
                "precision": "bf16",
            },
        },
    ),
    "diagonal_bilstm-cifar10": Preset(
        "Diagonal BiLSTM on CIFAR-10 (PixelRNN paper: 3.00 bits/dim); GPU",
        {
            "model": {"name": "diagonal_bilstm", "hparams": {"hidden_channels": 128, "num_layers": 12}},
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {"lr": 3e-4, "warmup_steps": 1000, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {
                "steps": 500_000,
                "eval_every": 10_000,
                "sample_every": 10_000,
                "checkpoint_every": 5000,
                "num_samples": 16,
                "precision": "bf16",
            },
        },
    ),
    # Class-conditional Gated PixelCNN on digits, CPU-sized: the labels are the digit classes; label_dropout
    # 0.1 also trains the "no label" embedding so unconditional sampling stays meaningful.
    # `pixelmodels sample RUN --class 3` then draws threes.
    "gated_pixelcnn-digits": Preset(
        "class-conditional Gated PixelCNN on digits (8x8, 17 levels): CPU, a few minutes",
        {
            "model": {
                "name": "gated_pixelcnn",
                "hparams": {"hidden_channels": 32, "num_layers": 4, "num_classes": 10, "label_dropout": 0.1},
            },
            "data": {"dataset": "digits", "batch_size": 32},
            "optim": {"lr": 3e-3, "warmup_steps": 100, "schedule": "cosine", "ema_decay": 0.995},
            "train": {
                "steps": 1500,
                "log_every": 50,
                "eval_every": 250,
                "sample_every": 500,
                "checkpoint_every": 250,
                "num_threads": 1,
            },
        },
    ),
    # SPN (Menick & Kalchbrenner 2018) on CelebA-HQ-style folder data at 64x64, with both upscalings as in the
    # paper's CelebA-HQ runs (depth: 3 MSB bits). S=4 -> 16x16 slices: training memory is that of one 16x16
    # slice per image (train_slices=1; the trainer calls the model's estimate_log_prob). Widths are ours (the
    # paper's models are far larger). Set data.options.path to the image folder; needs a GPU. Not run here.
    "spn-folder-64": Preset(
        "SPN with size + depth upscaling on a folder of images at 64x64 (e.g. CelebA-HQ); GPU",
        {
            "model": {
                "name": "spn",
                "hparams": {
                    "scale": 4,
                    "hidden_channels": 64,
                    "num_layers": 8,
                    "context_channels": 128,
                    "context_layers": 6,
                    "first_kernel_size": 5,
                    "size_upscaling": True,
                    "depth_upscaling_bits": 3,
                    "train_slices": 1,
                },
            },
            "data": {
                "dataset": "folder",
                "options": {"size": 64, "channels": 3},
                "batch_size": 32,
                "max_eval_images": 1000,
            },
            "optim": {"lr": 3e-4, "warmup_steps": 1000, "schedule": "cosine", "ema_decay": 0.9995},
            "train": {
                "steps": 200_000,
                "eval_every": 5000,
                "sample_every": 10_000,
                "checkpoint_every": 2500,
                "num_samples": 16,
                "precision": "bf16",
            },
        },
    ),
    # Small SPN on digits for CPU: S=2 (4x4 slices), size upscaling, one random slice per image per step.
    "spn-digits": Preset(
        "small SPN (S=2, size upscaling) on digits: CPU, a few minutes",
        {
            "model": {
                "name": "spn",
                "hparams": {
                    "scale": 2,
                    "hidden_channels": 32,
                    "num_layers": 3,
                    "context_channels": 32,
                    "context_layers": 2,
                    "first_kernel_size": 3,
                    "size_upscaling": True,
                    "train_slices": 1,
                },
            },
            "data": {"dataset": "digits", "batch_size": 32},
            "optim": {"lr": 3e-3, "warmup_steps": 100, "schedule": "cosine", "ema_decay": 0.995},
            "train": {
                "steps": 1500,
                "log_every": 50,
                "eval_every": 250,
                "sample_every": 500,
                "checkpoint_every": 250,
                "num_threads": 1,
            },
        },
    ),
}


def available_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> RunConfig:
    """The preset's full config (defaults filled in); unknown name -> ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    d = RunConfig().to_dict()
    for section, values in copy.deepcopy(PRESETS[name].config).items():
        d[section].update(values)
    d["preset"] = name
    return RunConfig.from_dict(d)


# ----- photographs (issue 19): CPU presets on 32x32 random crops of the Wikimedia photographs -----------------
# Each is sized for about one CPU-hour on one thread of the shared 2-core machine: steps ~ 3600 s / (s/step at
# batch 16, one thread), the s/step named in each entry. Random crops (fresh per epoch, from the run's seed) use
# every crop position; validation scores 256 evenly spaced valid patches (a few seconds), the test split
# (1024 evenly spaced patches) at the end. Evaluate on Kodak afterwards: `pixelmodels evaluate RUN --dataset
# kodak` (patches) or `--images kodak` (whole images). Nothing trains or is tuned on Kodak.
# The paper-sized CIFAR-10 presets above run offline on these photographs with
# `--set data.dataset=photographs --set data.options.crop=random` (docs/data.md).
_PHOTOGRAPHS_DATA = {
    "dataset": "photographs",
    "options": {"size": 32, "crop": "random"},
    "batch_size": 16,
    "eval_batch_size": 64,
    "max_eval_images": 256,
    "max_test_images": 1024,
}


def _photographs_preset(description: str, model: dict, steps: int, lr: float = 2e-3) -> Preset:
    return Preset(
        description,
        {
            "model": model,
            "data": copy.deepcopy(_PHOTOGRAPHS_DATA),
            "optim": {"lr": lr, "warmup_steps": 200, "schedule": "cosine", "ema_decay": 0.999},
            "train": {
                "steps": steps,
                "log_every": 50,
                "eval_every": 500,
                "sample_every": 0,
                "checkpoint_every": 250,
                "num_samples": 16,
                "num_threads": 1,
            },
        },
    )


PRESETS.update(
    {
        # The shipped photograph model (the codec's, quantized by pixelmodels.quantized). 130k parameters:
        # h=32, 6 layers of 3x3 gated blocks, DMoL head (10 logistics): 0.58 s/step at batch 16 in isolation
        # (load ~3), 0.93 s/step in a real run at load ~5.8 -> 4000 steps (h=32 with 5x5 kernels, 235k
        # parameters: 0.58-0.82 s/step in isolation; the smaller one was kept for decoding speed).
        "gated_pixelcnn-photographs": _photographs_preset(
            "Gated PixelCNN + DMoL on 32x32 photograph crops: ~1 CPU-hour on one thread (the shipped photo model)",
            {
                "name": "gated_pixelcnn",
                "hparams": {"hidden_channels": 32, "num_layers": 6, "kernel_size": 3, "head": "dmol"},
            },
            4000,
        ),
        # Step counts below: 3600 s / (2.6 x the s/step `python -m benchmarks.photographs --quick` measured for
        # the preset's model: batch 16, one thread, load ~2-5, table in docs/benchmarks.md). 2.6 = the gated
        # preset's real s/step over its whole one-hour run (0.83: evaluations, data, load 2-11) / its probe
        # (0.32). Only the gated preset was run for the full hour; the others are estimates from that ratio.
        "pixelcnn-photographs": _photographs_preset(
            "PixelCNN (256-way softmax) on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {"name": "pixelcnn", "hparams": {"hidden_channels": 32, "num_layers": 5}},
            850,
        ),
        "pixelcnn_dmol-photographs": _photographs_preset(
            "PixelCNN + DMoL head on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {"name": "pixelcnn", "hparams": {"hidden_channels": 32, "num_layers": 5, "head": "dmol"}},
            7200,
        ),
        "row_lstm-photographs": _photographs_preset(
            "Row LSTM on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {"name": "row_lstm", "hparams": {"hidden_channels": 32, "num_layers": 3}},
            2700,
        ),
        "diagonal_bilstm-photographs": _photographs_preset(
            "Diagonal BiLSTM on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {"name": "diagonal_bilstm", "hparams": {"hidden_channels": 32, "num_layers": 2}},
            900,
        ),
        # dropout 0: one CPU-hour is far from overfitting 40 photographs' crops.
        "pixelcnn_pp-photographs": _photographs_preset(
            "PixelCNN++ (F=32, DMoL) on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {
                "name": "pixelcnn_pp",
                "hparams": {
                    "hidden_channels": 32,
                    "num_layers": 2,
                    "num_resolutions": 3,
                    "num_mixtures": 10,
                    "dropout": 0.0,
                },
            },  # fmt: skip
            1500,
        ),
        # S=2: four 16x16 slices per crop; the trainer optimises one random slice per image (train_slices=1).
        "spn-photographs": _photographs_preset(
            "Subscale Pixel Network (S=2) on 32x32 photograph crops: ~1 CPU-hour on one thread",
            {"name": "spn", "hparams": {"scale": 2, "hidden_channels": 32, "num_layers": 3, "context_layers": 2}},
            18000,
        ),
    }
)
