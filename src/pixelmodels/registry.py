"""Model registry: every model family registers its constructor under one name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

_MODELS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = cls
        cls.model_name = name
        return cls

    return decorator


def available_models() -> list[str]:
    _import_models()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    _import_models()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def hyperparameters(cls: type) -> dict[str, object]:
    """Constructor keywords of a model class (besides image_shape and num_levels) with their defaults."""
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "image_shape", "num_levels") and p.kind is p.KEYWORD_ONLY
    }


def build(name: str, image_shape: tuple[int, int, int], num_levels: int, **hparams):
    """Build a registered model: ``build("pixelcnn", image_shape=(1, 28, 28), num_levels=2, num_layers=7)``."""
    cls = get_model_class(name)
    valid = hyperparameters(cls)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown} for model {name!r}; valid: {', '.join(sorted(valid))}")
    return cls(image_shape=tuple(image_shape), num_levels=num_levels, **hparams)


def _import_models() -> None:
    import pixelmodels.models  # noqa: F401  (importing registers every family)
