"""Mixed precision and torch.compile in the trainer, on the CPU: bf16 autocast with a float32 log-likelihood."""

import json
import logging
import math

import pytest
import torch

import pixelmodels
from pixelmodels.training import apply_overrides, get_preset, train
from pixelmodels.training.trainer import LogProbObjective, amp_dtype

TINY = [
    "model.hidden_channels=8",
    "model.num_layers=1",
    "model.first_kernel_size=3",
    "data.batch_size=8",
    "data.max_train_images=40",
    "data.max_eval_images=16",
    "train.steps=3",
    "train.eval_every=3",
    "train.sample_every=0",
    "train.log_every=1",
    "train.num_samples=2",
    "train.num_threads=1",
]


def tiny_model():
    torch.manual_seed(0)
    return pixelmodels.build(
        "pixelcnn", image_shape=(1, 8, 8), num_levels=17, hidden_channels=8, num_layers=1, first_kernel_size=3
    )


def test_bf16_autocast_keeps_the_log_likelihood_in_float32():
    model, x = tiny_model(), torch.randint(0, 17, (4, 1, 8, 8))
    exact = LogProbObjective(model)(x, None)  # (4,)
    seen = []
    model.input_conv.register_forward_hook(lambda module, args, out: seen.append(out))
    mixed = LogProbObjective(model, torch.bfloat16)(x, None)
    assert seen[0].dtype == torch.bfloat16  # the network really ran under autocast (its last layer in float32)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert not torch.equal(mixed, exact)  # bf16 rounding shows ...
    torch.testing.assert_close(mixed, exact, rtol=0.02, atol=0.0)  # ... but stays close
    mixed.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_precision_choice_by_device(caplog):
    cpu = torch.device("cpu")
    assert amp_dtype("fp32", cpu) is None and amp_dtype("bf16", cpu) is torch.bfloat16
    with caplog.at_level(logging.WARNING):
        assert amp_dtype("fp16", cpu) is None  # fp16 + GradScaler is for GPUs only
    assert "fp16 needs a GPU" in caplog.text


def test_bf16_training_on_cpu(tmp_path):
    config = apply_overrides(get_preset("quickstart"), TINY + ["train.precision=bf16"])
    run = train(config, tmp_path / "bf16")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_bits = [m["bits_per_dim"] for m in lines if m["split"] == "train"]
    assert len(train_bits) == 3 and all(math.isfinite(b) for b in train_bits)
    assert math.isfinite(json.loads((run / "results.json").read_text())["test"]["bits_per_dim"])


@pytest.mark.slow  # inductor compiles C++ for ~45 s even for this tiny model on the shared 2-core machine
def test_compiled_training_matches_eager(tmp_path):
    config = apply_overrides(get_preset("quickstart"), TINY + ["optim.ema_decay=0"])
    eager = train(config, tmp_path / "eager")
    compiled = train(apply_overrides(config, ["train.compile=true"]), tmp_path / "compiled")
    a = pixelmodels.load_checkpoint(eager, "last", weights="raw").state_dict()
    b = pixelmodels.load_checkpoint(compiled, "last", weights="raw").state_dict()
    assert a.keys() == b.keys()  # no _orig_mod. prefix
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
