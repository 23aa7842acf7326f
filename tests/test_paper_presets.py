"""The paper presets say what the papers specify (PixelRNN arXiv 1601.06759v3 section 4 and 5.2, Gated PixelCNN
arXiv 1606.05328v2 section 3.1), and the RMSProp option they use trains and checkpoints."""

import pytest
import torch

import pixelmodels
from pixelmodels.training import PRESETS, apply_overrides, get_preset, train
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.trainer import build_optimizer

# (preset, model hyper-parameters the paper gives)
PAPER = [
    ("pixelcnn-binarized-mnist", dict(output_channels=32, skip_connections=True)),
    ("pixelcnn-cifar10", dict(hidden_channels=128, num_layers=15, output_channels=1024, skip_connections=True)),
    ("diagonal_bilstm-binarized-mnist", dict(hidden_channels=16, num_layers=7, output_channels=32, full_context=False)),
    ("row_lstm-binarized-mnist", dict(output_channels=32)),
    ("row_lstm-cifar10", dict(hidden_channels=128, num_layers=12, output_channels=1024)),
    ("diagonal_bilstm-cifar10", dict(hidden_channels=128, num_layers=12, output_channels=1024, full_context=False)),
    ("row_lstm-imagenet32", dict(hidden_channels=384, num_layers=12, output_channels=1024)),
    ("row_lstm-imagenet64", dict(hidden_channels=512, num_layers=4, residual=False, output_channels=1024)),
    ("gated_pixelcnn-imagenet32", dict(hidden_channels=384, num_layers=20, kernel_size=5, skip_connections=False)),
]


@pytest.mark.parametrize("name,expected", PAPER, ids=[p for p, _ in PAPER])
def test_paper_presets_use_the_papers_hyperparameters(name, expected):
    config = get_preset(name)
    for key, value in expected.items():
        assert config.model.hparams[key] == value, key
    if "PixelRNN paper" in PRESETS[name].description:
        assert config.optim.optimizer == "rmsprop"  # section 5.2
        if config.model.name != "pixelcnn":
            assert config.model.hparams["learned_init"] is True


@pytest.mark.parametrize("name", ["row_lstm-imagenet32", "row_lstm-imagenet64", "gated_pixelcnn-imagenet32"])
def test_imagenet_presets_build(name):
    """The ImageNet presets' models build and run (on a tiny image: the data are not here, and a step at the
    paper's size is GPU work)."""
    config = get_preset(name)
    model = pixelmodels.build(config.model.name, image_shape=(3, 2, 2), num_levels=256, **config.model.hparams)
    with torch.no_grad():
        assert model(torch.randint(256, (1, 3, 2, 2))).shape == (1, 3 * 256, 2, 2)


def test_rmsprop_trains_and_checkpoints(tmp_path):
    config = apply_overrides(
        get_preset("quickstart"),
        [
            "optim.optimizer=rmsprop",
            "optim.beta2=0.9",
            "model.hidden_channels=4",
            "model.num_layers=1",
            "data.max_train_images=16",
            "data.max_eval_images=8",
            "data.batch_size=8",
            "train.steps=2",
            "train.eval_every=2",
            "train.sample_every=0",
            "train.num_samples=1",
        ],
    )
    optimizer = build_optimizer(torch.nn.Linear(2, 2), config.optim)
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["alpha"] == 0.9
    run = train(config, tmp_path / "run")
    _, tensors = ckpt.read_checkpoint(run, "last")
    assert any(key.endswith("/square_avg") for key in tensors)
    with pytest.raises(ValueError, match="optim.optimizer must be one of adam, adamw, rmsprop"):
        apply_overrides(config, ["optim.optimizer=sgd"])


def test_widths_say_what_hidden_channels_means(capsys):
    """hidden_channels is h (a 2h-wide stream) in PixelCNN and PixelRNN, p (the stream) in Gated PixelCNN: each
    model reports its widths, and ``pixelmodels models -v`` prints them."""
    from pixelmodels.cli import main

    def widths(name, **kw):
        return pixelmodels.build(name, image_shape=(3, 4, 4), num_levels=4, hidden_channels=12, **kw).widths

    assert widths("pixelcnn")["residual stream (2h)"] == 24
    assert widths("row_lstm")["residual stream (2h)"] == 24 and widths("row_lstm")["LSTM units (h)"] == 12
    assert widths("diagonal_bilstm", output_channels=40)["output layer"] == 40
    assert widths("gated_pixelcnn")["stacks (p)"] == 12
    assert main(["models", "-v"]) == 0
    out = capsys.readouterr().out
    assert out.count("widths at the defaults") == 4 and "stacks (p) = 64" in out


@pytest.mark.parametrize(
    "name,kw", [("pixelcnn", dict(skip_connections=True)), ("gated_pixelcnn", dict(skip_connections=False))]
)
def test_integer_coding_refuses_layouts_it_does_not_follow(name, kw):
    """The integer networks (pixelmodels.quantized) follow the default layouts; the paper options that change
    the layout (PixelCNN skips, Gated PixelCNN without skips) get a clear error instead of a wrong network."""
    from pixelmodels.quantized import quantize

    model = pixelmodels.build(name, image_shape=(1, 4, 4), num_levels=4, hidden_channels=6, num_layers=1, **kw)
    with pytest.raises(ValueError, match="skip_connections"):
        quantize(model, torch.randint(4, (8, 1, 4, 4)))
