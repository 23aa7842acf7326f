"""Tiny configurations of every registered model, shared by the contract suite and later tests.

Every name in ``pixelmodels.available_models()`` must appear here (``test_every_model_has_a_variant``):
adding a model means adding its tiny variants, and the whole contract suite then runs on it.
A variant is (model name, hyper-parameters, image shapes it cannot take).
"""

from __future__ import annotations

from typing import NamedTuple


class Variant(NamedTuple):
    name: str
    hparams: dict
    # Optional predicate on (C, H, W): False means the variant cannot model that shape (e.g. SPN needs H, W
    # divisible by its subscale factor); the suite then skips that shape for it.
    supports: object = None

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.hparams.items() if k not in ("hidden_channels", "num_layers"))
        return self.name + (f"[{extra}]" if extra else "")

    def accepts(self, shape) -> bool:
        return self.supports is None or self.supports(shape)


VARIANTS: list[Variant] = [
    Variant("pixelcnn", dict(hidden_channels=6, num_layers=2)),
    Variant("row_lstm", dict(hidden_channels=12, num_layers=2, first_kernel_size=3)),
    Variant("diagonal_bilstm", dict(hidden_channels=12, num_layers=2, first_kernel_size=3)),
    Variant("gated_pixelcnn", dict(hidden_channels=12, num_layers=2, kernel_size=3)),
    # (the conditional configuration is checked against the contract with labels and a map in test_gated_pixelcnn.py)
]
