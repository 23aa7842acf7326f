"""Run config: presets, --set overrides (typed, Literal-checked, unknown keys named), JSON round trip."""

import json

import pytest

from pixelmodels.training import PRESETS, RunConfig, apply_overrides, get_preset, valid_keys


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = get_preset(name)
    assert config.preset == name
    config.validate()


def test_quickstart_is_a_small_pixelcnn_on_digits():
    config = get_preset("quickstart")
    assert config.model.name == "pixelcnn" and config.data.dataset == "digits"


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown preset 'nope'.*quickstart"):
        get_preset("nope")


def test_overrides_are_parsed_by_field_type():
    base = get_preset("quickstart")
    config = apply_overrides(
        base,
        [
            "optim.lr=3e-4",
            "train.steps=7",
            "train.compile=true",
            "train.precision=bf16",
            "optim.grad_clip=none",
            "model.hidden_channels=8",
            "model.output_channels=12",
            "data.options.size=32",
        ],
    )
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.train.steps == 7 and config.train.compile is True and config.train.precision == "bf16"
    assert config.optim.grad_clip is None
    assert config.model.hparams["hidden_channels"] == 8 and config.model.hparams["output_channels"] == 12
    assert config.data.options == {"size": 32}
    assert base.optim.lr != 3e-4  # the input config is not changed


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", r"unknown key 'optim.lrr'; valid: .*optim\.lr,"),
        ("model.depth=3", r"unknown key 'model.depth'; valid: .*model\.hidden_channels"),
        ("nonsense=3", r"unknown key 'nonsense'"),
        ("optim.lr=fast", r"optim.lr must be a number, got 'fast'"),
        ("train.steps=1.5", r"train.steps must be an integer"),
        ("model.hidden_channels=many", r"model.hidden_channels must be an integer"),
        ("train.compile=maybe", r"train.compile must be true or false"),
        ("train.precision=fp64", r"train.precision must be one of fp32, bf16, fp16"),
        ("optim.optimizer=sgd", r"optim.optimizer must be one of adam, adamw"),
        ("model.name=nope", r"unknown model 'nope'"),
        ("optim", r"must look like key=value"),
        ("optim=1", r"is a section"),
        ("optim.lr=-1", r"optim.lr must be > 0"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_preset("quickstart"), [override])


def test_valid_keys_follow_the_chosen_model():
    keys = valid_keys(get_preset("quickstart"))
    assert "model.hidden_channels" in keys and "optim.lr" in keys and "train.steps" in keys


def test_json_round_trip_and_strict_loading():
    config = apply_overrides(get_preset("quickstart"), ["optim.lr=2e-3", "model.num_layers=2"])
    again = RunConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    bad = config.to_dict()
    bad["optim"]["learning_rate"] = 1.0
    with pytest.raises(ValueError, match="unknown config key 'optim.learning_rate'"):
        RunConfig.from_dict(bad)
    bad = config.to_dict()
    bad["train"]["steps"] = "many"
    with pytest.raises(ValueError, match="train.steps must be int"):
        RunConfig.from_dict(bad)
