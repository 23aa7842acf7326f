"""Learning-curve regression guard: a tiny PixelCNN trained on digits must reach a measured bits/dim.

The contract tests prove that a model is causal and normalized; they cannot see a bug that keeps both but makes
the model learn less (a mask that hides more context than it should, a receptive field cut short, a loss or
optimizer change that slows learning). This guard trains a tiny PixelCNN with the project's trainer
(``pixelmodels.train``: 400 steps of batch 32 on digits, 8x8, 17 levels; EMA weights) and checks the test
bits/dim against a threshold set from measured runs.

Measured on the project machine (2-core CPU, torch 2.13 CPU, one thread; 5 to 20 s a run under load):

==============================================================  ============================================
model (hidden 16)                                               test bits/dim (seeds 0, 1, 2, 3)
==============================================================  ============================================
PixelCNN, 5x5 mask-A input + 2 residual blocks (the guard)      2.077, 2.057, 2.081, 2.060
only the 4 nearest causal neighbours (3x3 mask A, no blocks)    2.386, 2.383, 2.374 (seeds 0-2)
context cut (1x1 mask A: sees no earlier pixel)                 2.568 (seed 0)
uniform over 17 levels                                          4.087
==============================================================  ============================================

``THRESHOLD = 2.20`` sits 0.12 above the worst healthy run (about 5 times the spread over seeds) and 0.17 below
the model that sees only its 4 nearest neighbours. The two variants with less context are run here too, to show
that the guard fails when context is lost: they learn (far below uniform) but stay above the threshold.
"""

from __future__ import annotations

import json

import pytest

import pixelmodels
from pixelmodels.training import RunConfig

THRESHOLD = 2.20  # bits/dim on the digits test split; see the module docstring for the measured runs
GUARD = {"hidden_channels": 16, "num_layers": 2, "first_kernel_size": 5}
NEAREST_NEIGHBOURS = {"hidden_channels": 16, "num_layers": 0, "first_kernel_size": 3}
CONTEXT_CUT = {**GUARD, "first_kernel_size": 1}


def digits_bits_per_dim(tmp_path, hparams: dict, seed: int = 0, steps: int = 400) -> float:
    """Train a tiny PixelCNN on digits with the project's trainer; the test bits/dim of its EMA weights."""
    config = RunConfig.from_dict(
        {
            "model": {"name": "pixelcnn", "hparams": hparams},
            "data": {"dataset": "digits", "batch_size": 32},
            "optim": {"lr": 3e-3, "warmup_steps": 20, "ema_decay": 0.99},
            "train": {
                "steps": steps,
                "log_every": 100,
                "eval_every": steps,
                "sample_every": 0,
                "checkpoint_every": steps,
                "num_samples": 1,
                "seed": seed,
                "num_threads": 1,
            },
        }
    )
    run_dir = pixelmodels.train(config, tmp_path / "run", progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == steps
    return results["test"]["bits_per_dim"]


@pytest.mark.slow
def test_tiny_pixelcnn_learns_digits(tmp_path):
    bpd = digits_bits_per_dim(tmp_path, GUARD)
    assert bpd < THRESHOLD, f"tiny PixelCNN reached {bpd:.3f} bits/dim on digits; measured 2.06-2.08 before"


@pytest.mark.slow
@pytest.mark.parametrize("hparams", [NEAREST_NEIGHBOURS, CONTEXT_CUT], ids=["nearest-neighbours", "context-cut"])
def test_guard_fails_for_a_model_with_less_context(tmp_path, hparams):
    bpd = digits_bits_per_dim(tmp_path, hparams)
    assert bpd < 4.0  # it does learn (uniform is 4.087) ...
    assert bpd > THRESHOLD  # ... but not enough to pass the guard
