"""Run configuration as typed dataclasses, with ``--set key=value`` overrides checked against the fields.

A run is described by one :class:`RunConfig` holding four parts::

    model  ModelConfig   which registered model and its hyper-parameters (checked against its constructor)
    data   DataConfig    data set, splits, batch sizes
    optim  OptimConfig   Adam/AdamW, warm-up and decay, gradient clipping, EMA
    train  TrainConfig   steps, evaluation/sample/checkpoint cadence, seed, device, precision, compile

Overrides use dotted keys: ``optim.lr=3e-4``, ``train.steps=2000``, ``model.hidden_channels=32``,
``data.options.size=32``. Values are parsed by the field's type (``Literal`` options are checked, ``none``
clears an optional field); an unknown key is an error that lists the valid ones. The config round-trips
through JSON (``to_dict`` / ``from_dict``), and the resolved config is saved in every run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pixelmodels.registry import get_model_class, hyperparameters

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass
class ModelConfig:
    """A registered model: ``pixelmodels.build(name, image_shape, num_levels, **hparams)``; the image shape
    and level count come from the data set."""

    name: str = "pixelcnn"
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Which data set and how it is batched; ``options`` go to ``pixelmodels.data.load_dataset``."""

    dataset: str = "digits"
    data_dir: str | None = None  # None: $PIXELMODELS_DATA or the loader's default
    num_levels: int | None = None  # None: the data set's own K
    batch_size: int = 64  # the global batch: with N processes (torchrun) each takes batch_size / N
    eval_batch_size: int = 256
    max_train_images: int | None = None  # use only the first N training images (quick experiments, tests)
    max_eval_images: int | None = None  # cap the validation images scored during training (test: max_test_images)
    valid_split: str = "valid"  # scored during training, picks the best checkpoint
    test_split: str = "test"  # scored once at the end, with the best checkpoint
    options: dict[str, Any] = field(default_factory=dict)
    max_test_images: int | None = None  # score an evenly spaced subset of the test split (quick benchmarks)
    prefetch: int = 2  # batches gathered ahead of the training loop by a thread (0: in the loop)


@dataclass
class OptimConfig:
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: Literal["constant", "cosine", "linear"] = "cosine"  # decay after warm-up, to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm; None disables clipping
    ema_decay: float = 0.999  # Polyak averaging of the weights, used for evaluation and sampling; 0 disables


@dataclass
class TrainConfig:
    steps: int = 1000
    log_every: int = 50  # metrics.jsonl / TensorBoard cadence, in steps
    eval_every: int = 500  # validation NLL (EMA weights) and best-checkpoint cadence
    sample_every: int = 500  # sample grid cadence (0 disables samples during training)
    checkpoint_every: int = 500  # 'last' checkpoint cadence (one is always written at the end)
    num_samples: int = 64  # images in each sample grid
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    num_threads: int | None = None  # torch CPU threads for this process (None: torch's default)
    precision: Precision = "fp32"  # bf16 autocast (GPU or CPU), fp16 + GradScaler (GPU); log-likelihood in float32
    compile: bool = False  # torch.compile the training forward pass
    dist_timeout_s: float = 1800.0  # torchrun runs: a collective waiting longer than this ends the run with an error


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None  # the preset this config started from, for the record

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Rebuild a config from ``to_dict`` output; unknown or mistyped keys are a ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"a run config must be a JSON object, got {type(d).__name__}")
        config = cls()
        for key, value in d.items():
            section = _field_of(config, key, "")
            if dataclasses.is_dataclass(getattr(config, key)):
                if not isinstance(value, dict):
                    raise ValueError(f"config section {key!r} must be an object, got {value!r}")
                for sub_key, sub_value in value.items():
                    _field_of(getattr(config, key), sub_key, key + ".")
                    setattr(getattr(config, key), sub_key, sub_value)
            else:
                setattr(config, section.name, value)
        config.validate()
        return config

    def validate(self) -> None:
        """Check every field's type and the model's hyper-parameter names; ValueError on the first problem."""
        for part_name in ("model", "data", "optim", "train"):
            part = getattr(self, part_name)
            hints = typing.get_type_hints(type(part))
            for f in dataclasses.fields(part):
                _check_type(f"{part_name}.{f.name}", getattr(part, f.name), hints[f.name])
        cls = get_model_class(self.model.name)
        valid = hyperparameters(cls)
        hints = _model_hints(cls)
        for key, value in self.model.hparams.items():
            if key not in valid:
                raise ValueError(
                    f"unknown key 'model.{key}' for model {self.model.name!r}; valid: "
                    + ", ".join(["model.name", *(f"model.{k}" for k in sorted(valid))])
                )
            if key in hints:
                _check_type(f"model.{key}", value, hints[key])
        for key, value in _numbers(self):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value}")
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self.data, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(self.data, key)}")
        if self.data.max_test_images is not None and self.data.max_test_images < 1:
            raise ValueError(f"data.max_test_images must be >= 1 or none, got {self.data.max_test_images}")
        if self.train.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.train.steps}")
        if self.train.num_threads is not None and self.train.num_threads < 1:
            raise ValueError(f"train.num_threads must be >= 1, got {self.train.num_threads}")
        for key in ("log_every", "eval_every", "checkpoint_every"):
            if getattr(self.train, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self.train, key)}")
        if self.data.prefetch < 0:
            raise ValueError(f"data.prefetch must be >= 0, got {self.data.prefetch}")
        if not self.train.dist_timeout_s > 0:
            raise ValueError(f"train.dist_timeout_s must be > 0, got {self.train.dist_timeout_s}")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.optim.ema_decay}")
        if not self.optim.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.optim.lr}")


def valid_keys(config: RunConfig) -> list[str]:
    """Every key ``--set`` accepts for this config (model keys depend on the chosen model)."""
    keys = []
    for part_name in ("data", "optim", "train"):
        keys += [f"{part_name}.{f.name}" for f in dataclasses.fields(getattr(config, part_name))]
    keys += ["model.name", *(f"model.{k}" for k in sorted(hyperparameters(get_model_class(config.model.name))))]
    return keys


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` strings in order (``model.name`` first, so model keys check against the new model).

    Returns a new config; ``config`` is not changed.
    """
    config = RunConfig.from_dict(config.to_dict())
    pairs = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value, e.g. optim.lr=3e-4")
        pairs.append((key.strip(), text.strip()))
    pairs.sort(key=lambda kv: kv[0] != "model.name")  # stable: keeps the user's order otherwise
    for key, text in pairs:
        set_value(config, key, text)
    config.validate()
    return config


def set_value(config: RunConfig, key: str, text: str) -> None:
    """Set one dotted key from its string form, parsed and checked by the field's type."""
    parts = key.split(".")
    if parts[0] not in ("model", "data", "optim", "train"):
        raise _unknown(key, config)
    if parts[0] == "model" and len(parts) == 2 and parts[1] != "name":
        cls = get_model_class(config.model.name)
        if parts[1] not in hyperparameters(cls):
            raise _unknown(key, config)
        hint = _model_hints(cls).get(parts[1])
        default = hyperparameters(cls)[parts[1]]
        config.model.hparams[parts[1]] = parse_value(key, text, hint if hint is not None else type(default))
        return
    if parts[0] == "data" and len(parts) == 3 and parts[1] == "options":
        config.data.options[parts[2]] = _parse_literal(text)  # data-set specific: checked by the loader
        return
    target: Any = config
    for name in parts[:-1]:
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise _unknown(key, config)
        target = getattr(target, name)
    if not dataclasses.is_dataclass(target) or parts[-1] not in {f.name for f in dataclasses.fields(target)}:
        raise _unknown(key, config)
    hint = typing.get_type_hints(type(target))[parts[-1]]
    if dataclasses.is_dataclass(getattr(target, parts[-1])) or typing.get_origin(hint) is dict:
        raise ValueError(f"{key!r} is a section; set one of its keys, e.g. {key}.<name>=value")
    setattr(target, parts[-1], parse_value(key, text, hint))
    if key == "model.name":
        get_model_class(config.model.name)  # unknown model: clear error now
        valid = hyperparameters(get_model_class(config.model.name))
        config.model.hparams = {k: v for k, v in config.model.hparams.items() if k in valid}


def parse_value(key: str, text: str, hint: Any) -> Any:
    """Parse ``text`` as a value of type ``hint`` (int, float, bool, str, Literal, Optional of those)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(key, text, arg)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}: cannot parse {text!r} as {_type_name(hint)}")
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{key} must be one of {', '.join(map(str, args))}; got {text!r}")
        return text
    if hint is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{key} must be an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {text!r}") from None
    if hint is str:
        return text
    return _parse_literal(text)


# ----- helpers ---------------------------------------------------------------------------------------------
def _field_of(obj: Any, name: str, prefix: str) -> dataclasses.Field:
    for f in dataclasses.fields(obj):
        if f.name == name:
            return f
    valid = ", ".join(prefix + f.name for f in dataclasses.fields(obj))
    raise ValueError(f"unknown config key {prefix + name!r}; valid: {valid}")


def _numbers(config: RunConfig):
    """(dotted key, value) of every top-level value of the four sections and of ``model.*`` / ``data.options.*``."""
    for part_name in ("model", "data", "optim", "train"):
        part = getattr(config, part_name)
        for f in dataclasses.fields(part):
            yield f"{part_name}.{f.name}", getattr(part, f.name)
    yield from ((f"model.{k}", v) for k, v in config.model.hparams.items())
    yield from ((f"data.options.{k}", v) for k, v in config.data.options.items())


def _unknown(key: str, config: RunConfig) -> ValueError:
    return ValueError(f"unknown key {key!r}; valid: {', '.join(valid_keys(config))}")


def _model_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # a model whose annotations do not evaluate: fall back to the defaults' types
        return {}


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_type(key: str, value: Any, hint: Any) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return
    if origin in (typing.Union, types.UnionType):
        if any(_matches(value, a) for a in args):
            return
    elif _matches(value, hint):
        return
    if origin is Literal:
        raise ValueError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
    raise ValueError(f"{key} must be {_type_name(hint)}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))  # JSON has no tuples
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation we cannot check (e.g. a model's custom type): the model validates it


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
