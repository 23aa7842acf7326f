"""The contract every model keeps (DESIGN.md section 2).

- ``forward(x, cond)``: integer images (B, C, H, W) in [0, K) -> distribution parameters (B, P, H, W).
- ``log_prob(x, cond)``: exact log-likelihood in nats per image, (B,).
- ``sample(n, cond, known, known_mask, temperature, generator)``: ancestral sampling in ``order()``.

A subclass implements ``network(inputs, cond)`` on float inputs scaled to [-1, 1] (the causality test takes
gradients through it), stores every constructor argument under its own name (so ``config`` round-trips
through JSON), and may override ``order()`` and ``fast_sample``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from pixelmodels.heads import Head, build_head
from pixelmodels.ordering import Step, raster_order
from pixelmodels.registry import hyperparameters

SampleMethod = Literal["auto", "naive", "fast", "fixed_point"]


class AutoregressiveModel(nn.Module):
    model_name: str = "?"  # set by @register
    #: True when ``network`` on the first r rows of an image gives exactly the full pass's parameters there (raster-
    #: causal, size-agnostic layers): the fixed-point sampler's row blocks then run on the rows so far only.
    row_croppable: bool = False

    def __init__(self, image_shape: tuple[int, int, int], num_levels: int, head: str = "categorical"):
        super().__init__()
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
        if not 2 <= num_levels <= 65536:
            raise ValueError(f"num_levels must be in [2, 65536], got {num_levels}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_levels = int(num_levels)
        self.head_name = head
        self.head: Head = build_head(head, self.image_shape[0], self.num_levels)
        self._order: list[Step] | None = None

    # ----- what subclasses provide -------------------------------------------------------------------------
    def network(self, inputs: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Float inputs (B, C, H, W) in [-1, 1] -> parameters (B, P, H, W)."""
        raise NotImplementedError

    def order(self) -> list[Step]:
        """The generation order (default: raster, R -> G -> B); cached."""
        if self._order is None:
            self._order = raster_order(*self.image_shape, joint_channels=self.head.joint_channels)
        return self._order

    def colour_groups(self, hidden_channels: int) -> int:
        """Number of R -> G -> B channel groups for masked layers (1 when the head draws a pixel's channels
        jointly, so the network sees none of the current pixel); checks every group gets a hidden channel."""
        groups = 1 if self.head.joint_channels else self.image_shape[0]
        if hidden_channels < groups:
            raise ValueError(
                f"hidden_channels ({hidden_channels}) must be at least the channel count ({self.image_shape[0]})"
            )
        return groups

    @property
    def num_classes(self) -> int | None:
        """Number of class labels the model conditions on (None: unconditional)."""
        return None

    # ----- the contract ------------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """Everything needed to rebuild this model: ``pixelmodels.build(**model.config)``."""
        hparams = {k: self.head_name if k == "head" else getattr(self, k) for k in hyperparameters(type(self))}
        return {
            "name": self.model_name,
            "image_shape": list(self.image_shape),
            "num_levels": self.num_levels,
            **hparams,
        }

    @property
    def num_dims(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * (2.0 / (self.num_levels - 1)) - 1.0

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.check_images(x)
        return self.network(self.scale_input(x), self.check_cond(cond, x.shape[0]))

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood of each image in nats, shape (B,)."""
        params = self(x, cond)
        return self.head.log_prob(params.float(), x).sum(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | int | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        method: SampleMethod = "auto",
        progress: bool = False,
    ) -> torch.Tensor:
        """Draw ``n`` images in the model's order; sub-pixels where ``known_mask`` is True keep ``known``.

        Args:
            n: number of images.
            cond: class labels (n,) or one int for all, for conditional models.
            known, known_mask: (n, C, H, W) or (C, H, W) values and boolean mask of fixed sub-pixels.
            temperature: > 0; divides the logits (1.0 samples the model's distribution).
            generator: a ``torch.Generator`` on the model's device, for reproducible draws.
            method: "naive" recomputes the whole network per step; "fast" uses the model's cached
                sampler; "fixed_point" runs parallel Jacobi iterations of full forward passes with the
                randomness fixed in advance (``sampling.fixed_point_sample``: the same images as "naive" for the
                same generator); "auto" picks fast when the model has one.
            progress: show a progress bar over the steps.
        """
        from pixelmodels import sampling

        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if method not in ("auto", "naive", "fast", "fixed_point"):
            raise ValueError(f"method must be 'auto', 'naive', 'fast' or 'fixed_point', got {method!r}")
        if method == "fast" and not self.supports_fast_sampling:
            raise ValueError(f"model {self.model_name!r} has no fast sampler; use method='naive'")
        if method == "fixed_point" and not self.supports_fixed_point:
            raise ValueError(f"model {self.model_name!r} cannot be sampled by fixed-point iteration; use 'naive'")
        device = next(self.parameters()).device
        cond = self.check_cond(cond, n, device)
        known, known_mask = self.check_known(n, known, known_mask, device)
        fast = method == "fast" or (method == "auto" and self.supports_fast_sampling)
        was_training = self.training
        self.eval()
        try:
            kwargs = dict(temperature=temperature, generator=generator, progress=progress)
            if fast:
                return self.fast_sample(n, cond, known, known_mask, **kwargs)
            run = sampling.fixed_point_sample if method == "fixed_point" else sampling.naive_sample
            return run(self, n, cond, known, known_mask, **kwargs)
        finally:
            self.train(was_training)

    @property
    def supports_fast_sampling(self) -> bool:
        return type(self).fast_sample is not AutoregressiveModel.fast_sample

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False):
        raise NotImplementedError

    @property
    def supports_fixed_point(self) -> bool:
        """Whether ``network`` emits ``head``'s parameters for every step of ``order()`` (what the fixed-point
        sampler iterates on); a model whose generation is not one head draw per step overrides this."""
        return True

    # ----- input checks: one clear ValueError naming the problem --------------------------------------------
    def check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"images must be an integer tensor with values in [0, {self.num_levels}), got {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}"
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_levels):
            raise ValueError(
                f"image values must be in [0, {self.num_levels}), got min {int(x.min())} max {int(x.max())}"
            )

    def check_cond(self, cond, batch: int, device=None) -> torch.Tensor | None:
        if cond is None:
            return None
        if self.num_classes is None:
            raise ValueError(f"model {self.model_name!r} is unconditional: pass cond=None")
        cond = torch.as_tensor(cond, device=device)
        if cond.dim() == 0:
            cond = cond.expand(batch)
        if cond.dtype.is_floating_point or cond.shape != (batch,):
            raise ValueError(f"cond must be {batch} integer class labels, got shape {tuple(cond.shape)}")
        if int(cond.min()) < 0 or int(cond.max()) >= self.num_classes:
            raise ValueError(f"class labels must be in [0, {self.num_classes}), got {cond.tolist()[:8]}")
        return cond.long()

    def check_known(self, n, known, known_mask, device):
        if known is None and known_mask is None:
            return None, None
        if known is None or known_mask is None:
            raise ValueError("known and known_mask go together: pass both or neither")
        shape = (n, *self.image_shape)
        if known.dim() == 3:
            known = known.unsqueeze(0).expand(shape)
        if known_mask.dim() == 3:
            known_mask = known_mask.unsqueeze(0).expand(shape)
        if tuple(known.shape) != shape or tuple(known_mask.shape) != shape:
            raise ValueError(
                f"known and known_mask must have shape {shape} or {shape[1:]}, "
                f"got {tuple(known.shape)} and {tuple(known_mask.shape)}"
            )
        if known_mask.dtype != torch.bool:
            raise ValueError(f"known_mask must be a bool tensor, got {known_mask.dtype}")
        known = torch.where(known_mask, known, torch.zeros_like(known))  # unknown entries may hold anything
        self.check_images(known)
        return known.to(device).long(), known_mask.to(device)
