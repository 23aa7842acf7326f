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


# What the PixelRNN paper's recurrent presets share: a learned initial state (the paper learns it). The Diagonal
# BiLSTM presets also pin the paper's layer, full_context=False.
_PIXELRNN_PAPER: dict = {"learned_init": True}
# Section 5.2: RMSProp for every experiment; the learning rates were set by hand and are not given.
# beta2 = 0.95 is RMSProp's squared-gradient decay (ours); lr, warm-up, schedule and EMA are ours too.
_PAPER_RMSPROP: dict = {
    "optimizer": "rmsprop",
    "lr": 1e-3,
    "beta2": 0.95,
    "warmup_steps": 500,
    "schedule": "cosine",
    "ema_decay": 0.9995,
}
_GPU_TRAIN: dict = {
    "steps": 500_000,
    "eval_every": 10_000,
    "sample_every": 10_000,
    "checkpoint_every": 5000,
    "num_samples": 16,
    "precision": "bf16",
}
# Shared by the SPN presets (our choices, see the comment above "spn-celebahq-256").
_SPN_BIG = {"hidden_channels": 384, "num_layers": 8, "num_heads": 6, "context_channels": 384, "context_layers": 2,
            "context_attention_layers": 4, "first_kernel_size": 3, "train_slices": 1}  # fmt: skip
_SPN_OPTIM = {"lr": 3e-4, "warmup_steps": 2000, "schedule": "cosine", "ema_decay": 0.9995}
_SPN_TRAIN = {"steps": 300_000, "eval_every": 5000, "sample_every": 20_000, "checkpoint_every": 2500,
              "num_samples": 16, "precision": "bf16"}  # fmt: skip

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
    # PixelRNN paper (van den Oord et al. 2016, arXiv 1601.06759v3), Table 4: PixelCNN 81.30 nats on binarized
    # MNIST. Section 4: 32-wide output layers for MNIST, residual and layer-to-output (skip) connections in all
    # three networks; it gives the MNIST Diagonal BiLSTM 7 layers with h=16 but no size for the MNIST PixelCNN,
    # so we use the same. Section 5.2: RMSProp, batch 16; the learning rates were set by hand per data set and
    # are not given: lr, warm-up, cosine decay and EMA are ours. 3125 steps = one epoch of the 50k images.
    "pixelcnn-binarized-mnist": Preset(
        "PixelCNN on binarized MNIST (PixelRNN paper: 81.30 nats)",
        {
            "model": {
                "name": "pixelcnn",
                "hparams": {"hidden_channels": 16, "num_layers": 7, "output_channels": 32, "skip_connections": True},
            },
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": _PAPER_RMSPROP,
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # PixelRNN paper, Table 5: PixelCNN 3.14 bits/dim on CIFAR-10 test. Section 4: 15 layers, h=128 features
    # (the residual blocks carry 2h = 256), 1024 maps in the 1x1 output layers, skip connections, 256-way
    # softmax; section 5.2: RMSProp, batch 16 (lr, schedule, EMA ours). Needs a GPU: ~3 s/step on 2 CPU cores.
    # precision bf16: autocast on GPU; the last layer and the likelihood stay float32.
    "pixelcnn-cifar10": Preset(
        "PixelCNN on CIFAR-10 (PixelRNN paper: 3.14 bits/dim); GPU",
        {
            "model": {
                "name": "pixelcnn",
                "hparams": {
                    "hidden_channels": 128,
                    "num_layers": 15,
                    "output_channels": 1024,
                    "skip_connections": True,
                },
            },
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {**_PAPER_RMSPROP, "lr": 3e-4, "warmup_steps": 1000},
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
    # PixelRNN paper, section 4 / Table 4: a Diagonal BiLSTM with 7 layers of h=16 units reaches 79.20 nats on
    # binarized MNIST; 32-wide output layers, residual and skip connections (section 4), learned initial state,
    # the paper's layer (full_context=False; ours closes a one-pixel gap, models/pixelrnn.py), RMSProp and
    # batch 16 (section 5.2). lr, schedule and EMA are ours (not given). Slow on a CPU (~4 images/s).
    "diagonal_bilstm-binarized-mnist": Preset(
        "Diagonal BiLSTM on binarized MNIST (PixelRNN paper: 79.20 nats); GPU",
        {
            "model": {
                "name": "diagonal_bilstm",
                "hparams": {
                    **_PIXELRNN_PAPER,
                    "full_context": False,
                    "hidden_channels": 16,
                    "num_layers": 7,
                    "output_channels": 32,
                },
            },
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": _PAPER_RMSPROP,
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # Table 4 reports a Row LSTM on binarized MNIST at 80.54 nats; the paper gives its size nowhere (section 4
    # sizes only the MNIST Diagonal BiLSTM): this uses the Diagonal BiLSTM's 7 layers of h=16.
    "row_lstm-binarized-mnist": Preset(
        "Row LSTM on binarized MNIST (PixelRNN paper: 80.54 nats; size not given there); GPU",
        {
            "model": {
                "name": "row_lstm",
                "hparams": {**_PIXELRNN_PAPER, "hidden_channels": 16, "num_layers": 7, "output_channels": 32},
            },
            "data": {"dataset": "binarized_mnist", "batch_size": 16, "max_eval_images": 2000},
            "optim": _PAPER_RMSPROP,
            "train": {"steps": 200_000, "eval_every": 5000, "sample_every": 5000, "checkpoint_every": 2500},
        },
    ),
    # PixelRNN paper, section 4 / Table 5: 12 layers, h=128, 1024-wide output layers: Row LSTM 3.07, Diagonal
    # BiLSTM 3.00 bits/dim on CIFAR-10. RMSProp, batch 16 (section 5.2); lr, schedule and EMA ours.
    "row_lstm-cifar10": Preset(
        "Row LSTM on CIFAR-10 (PixelRNN paper: 3.07 bits/dim); GPU",
        {
            "model": {
                "name": "row_lstm",
                "hparams": {**_PIXELRNN_PAPER, "hidden_channels": 128, "num_layers": 12, "output_channels": 1024},
            },
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {**_PAPER_RMSPROP, "lr": 3e-4, "warmup_steps": 1000},
            "train": _GPU_TRAIN,
        },
    ),
    "diagonal_bilstm-cifar10": Preset(
        "Diagonal BiLSTM on CIFAR-10 (PixelRNN paper: 3.00 bits/dim); GPU",
        {
            "model": {
                "name": "diagonal_bilstm",
                "hparams": {
                    **_PIXELRNN_PAPER,
                    "full_context": False,
                    "hidden_channels": 128,
                    "num_layers": 12,
                    "output_channels": 1024,
                },
            },
            "data": {"dataset": "cifar10", "batch_size": 16, "max_eval_images": 2000},
            "optim": {**_PAPER_RMSPROP, "lr": 3e-4, "warmup_steps": 1000},
            "train": _GPU_TRAIN,
        },
    ),
    # PixelRNN paper, section 4 / Table 6: on 32x32 ImageNet a 12-layer Row LSTM with h=384 (3.86 bits/dim); on
    # 64x64 ImageNet a 4-layer Row LSTM with h=512 and no residual connections (3.63). Batch 64 and 32, RMSProp
    # (section 5.2). The downsampled ImageNet arrays are not shipped: set data.options.train / valid / test
    # (or path) to .npz files of (N, 32, 32, 3) uint8 images (pixelmodels datasets). GPU; not run here.
    "row_lstm-imagenet32": Preset(
        "Row LSTM on 32x32 ImageNet (PixelRNN paper: 3.86 bits/dim); npz files, GPU",
        {
            "model": {
                "name": "row_lstm",
                "hparams": {**_PIXELRNN_PAPER, "hidden_channels": 384, "num_layers": 12, "output_channels": 1024},
            },
            "data": {"dataset": "npz", "batch_size": 64, "max_eval_images": 2000},
            "optim": {**_PAPER_RMSPROP, "lr": 3e-4, "warmup_steps": 1000},
            "train": _GPU_TRAIN,
        },
    ),
    "row_lstm-imagenet64": Preset(
        "Row LSTM, 4 layers without residual connections, on 64x64 ImageNet (PixelRNN paper: 3.63); npz, GPU",
        {
            "model": {
                "name": "row_lstm",
                "hparams": {
                    **_PIXELRNN_PAPER,
                    "hidden_channels": 512,
                    "num_layers": 4,
                    "residual": False,
                    "output_channels": 1024,
                },
            },
            "data": {"dataset": "npz", "batch_size": 32, "max_eval_images": 2000},
            "optim": {**_PAPER_RMSPROP, "lr": 3e-4, "warmup_steps": 1000},
            "train": _GPU_TRAIN,
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
    # Gated PixelCNN paper (van den Oord et al. 2016, arXiv 1606.05328v2), section 3.1 / Table 2: 20 layers of
    # 384 units with 5x5 filters on 32x32 ImageNet, 3.83 bits/dim. No skip outputs (Figure 2 has none; ours are
    # optional). The paper trained on 32 GPUs; batch, optimizer (Adam), lr, schedule and EMA here are ours.
    # Set data.options (train / valid / test, or path) to .npz files of 32x32 ImageNet. GPU; not run here.
    "gated_pixelcnn-imagenet32": Preset(
        "Gated PixelCNN on 32x32 ImageNet (paper: 3.83 bits/dim); npz files, GPU",
        {
            "model": {
                "name": "gated_pixelcnn",
                "hparams": {"hidden_channels": 384, "num_layers": 20, "kernel_size": 5, "skip_connections": False},
            },
            "data": {"dataset": "npz", "batch_size": 128, "max_eval_images": 2000},
            "optim": {"lr": 3e-4, "warmup_steps": 1000, "schedule": "cosine", "ema_decay": 0.9995},
            "train": _GPU_TRAIN,
        },
    ),
    # SPN presets (Menick & Kalchbrenner 2018; docs/spn.md). Verified from the paper: only its reported results
    # (ImageNet 64x64: 3.52 bits/dim with ~150M parameters; ImageNet 128: 3.08 and 256: 2.97 with depth upscaling)
    # and that upscaling uses distinct stage networks. Every width, depth, subscale factor, bit split, step
    # count and learning rate below is our choice (the paper's text beyond the abstract could not be read here).
    # None of them has been run here (no GPU, no ImageNet or CelebA-HQ): no bits/dim is claimed for them.
    # Stage by stage: `pixelmodels train --preset NAME --stage first ...`, `--stage rest`, then `compose`.
    "spn-celebahq-256": Preset(
        "SPN, CelebA-HQ 256x256 at 5 bits (32 levels): depth split (3 MSBs) whose MSB model is a size split; GPU",
        {
            "model": {
                "name": "staged",
                "hparams": {
                    "split": "depth",
                    "factor": 3,
                    "first": {
                        "name": "staged",
                        "split": "size",
                        "factor": 4,
                        "first": {"name": "spn", **_SPN_BIG, "scale": 2},  # the 64x64 first slice
                        "rest": {"name": "spn", **_SPN_BIG},
                    },  # its 15 other 64x64 slices
                    "rest": {"name": "spn", **_SPN_BIG, "scale": 4},  # the 2 low bits given every MSB
                },
            },
            "data": {
                "dataset": "folder",
                "num_levels": 32,
                "options": {"path": "celeba_hq", "size": 256, "channels": 3},  # a folder under the data dir
                "batch_size": 16,
                "max_eval_images": 500,
            },
            "optim": _SPN_OPTIM,
            "train": _SPN_TRAIN,
        },
    ),
    **{
        f"spn-imagenet-{size}": Preset(
            f"SPN, ImageNet {size}x{size} at 8 bits: depth split (3 MSBs), both stages SPNs with S={scale}; GPU",
            {
                "model": {
                    "name": "staged",
                    "hparams": {
                        "split": "depth",
                        "factor": 3,
                        "first": {"name": "spn", **_SPN_BIG, "scale": scale},
                        "rest": {"name": "spn", **_SPN_BIG, "scale": scale},
                    },
                },
                "data": {
                    "dataset": "folder",
                    "options": {"path": f"imagenet{size}", "size": size, "channels": 3},
                    "batch_size": 32,
                    "max_eval_images": 1000,
                },
                "optim": _SPN_OPTIM,
                "train": _SPN_TRAIN,
            },
        )
        for size, scale in ((32, 2), (64, 4), (128, 4))
    },
    # Size upscaling in distinct stages on digits, CPU-sized: a small SPN for the 4x4 first slice, a conditional
    # SPN for the other three 4x4 slices given it. Train stage by stage (`--stage first`, `--stage rest`) and
    # join the runs with `pixelmodels compose`, or train both at once (train_stage "all").
    "spn-staged-digits": Preset(
        "size upscaling in two stages on digits (4x4 first slice, then the rest): CPU, a few minutes",
        {
            "model": {
                "name": "staged",
                "hparams": {
                    "split": "size",
                    "factor": 2,
                    "first": {
                        "name": "spn",
                        "scale": 2,
                        "hidden_channels": 24,
                        "num_layers": 2,
                        "num_heads": 3,
                        "context_layers": 1,
                        "context_attention_layers": 1,
                    },
                    "rest": {
                        "name": "spn",
                        "hidden_channels": 24,
                        "num_layers": 2,
                        "num_heads": 3,
                        "context_layers": 1,
                        "context_attention_layers": 1,
                    },
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
    # Small SPN on digits for CPU: S=2 (4x4 slices), one random slice per image per step.
    "spn-digits": Preset(
        "small SPN (S=2, attention context and decoder) on digits: CPU, a few minutes",
        {
            "model": {
                "name": "spn",
                "hparams": {
                    "scale": 2,
                    "hidden_channels": 24,
                    "num_layers": 2,
                    "num_heads": 3,
                    "context_channels": 24,
                    "context_layers": 1,
                    "context_attention_layers": 1,
                    "first_kernel_size": 3,
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
    # Multi-Scale PixelRNN (PixelRNN paper, section 3.6; models/multiscale.py) on digits, CPU-sized: a Row LSTM
    # of the 4x4 subsampled image x[:, :, ::2, ::2], then a conditional Row LSTM of the 8x8 image given it
    # through an upsampled map. The paper gives no sizes for it (its multi-scale model is for 64x64 ImageNet);
    # these are ours. `--stage first` / `--stage rest` train the two networks apart (see docs/spn.md, compose).
    "multiscale_pixelrnn-digits": Preset(
        "Multi-Scale PixelRNN (Row LSTMs, 4x4 then 8x8) on digits: CPU, a few minutes",
        {
            "model": {
                "name": "staged",
                "hparams": {
                    "split": "size",
                    "factor": 2,
                    "first": {"name": "row_lstm", "hidden_channels": 16, "num_layers": 2, "first_kernel_size": 3},
                    "rest": {
                        "name": "pixelrnn",
                        "model": "row_lstm",
                        "hidden_channels": 16,
                        "num_layers": 2,
                        "first_kernel_size": 5,
                    },
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
            # (the step count was calibrated on the earlier convolutional SPN; the attention SPN is not timed yet)
            "Subscale Pixel Network (S=2) on 32x32 photograph crops (steps not yet timed for the attention SPN)",
            {"name": "spn", "hparams": {"scale": 2, "hidden_channels": 36, "num_layers": 3, "context_layers": 2}},
            18000,
        ),
    }
)
