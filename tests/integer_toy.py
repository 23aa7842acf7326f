"""A stand-in for ``pixelmodels.quantized.IntegerModel`` in codec tests: exact integer tables that depend on the
left and upper neighbours of each sub-pixel (and its channel), with the same interface (``frequencies``,
``decode``, ``fingerprint``, ``precision``, ``save``/``load``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch


class ToyIntegerModel:
    def __init__(self, image_shape, num_levels, precision=16, seed=0, contexts=7):
        self.image_shape, self.num_levels, self.precision = tuple(image_shape), num_levels, precision
        self.config = {"image_shape": list(image_shape), "num_levels": num_levels, "precision": precision,
                       "seed": seed, "contexts": contexts}  # fmt: skip
        rng = np.random.default_rng(seed)
        raw = rng.integers(1, 1000, size=(image_shape[0], contexts, num_levels)) ** 2
        total = 1 << precision
        table = 1 + raw * (total - num_levels) // raw.sum(-1, keepdims=True)
        idx = table.argmax(-1)
        np.put_along_axis(table, idx[..., None], np.take_along_axis(table, idx[..., None], -1)
                          + (total - table.sum(-1))[..., None], -1)  # fmt: skip
        self.table, self.contexts = table.astype(np.int64), contexts
        self.fingerprint = hashlib.sha256(json.dumps(self.config).encode() + table.tobytes()).hexdigest()
        self.frequency_calls = 0

    def _context(self, left, up):
        return (left + 3 * up) % self.contexts

    def frequencies(self, x, cond=None):
        self.frequency_calls += 1
        x = torch.as_tensor(x).numpy()
        left = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 0)))[..., :-1]
        up = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
        ctx = self._context(left, up)  # (B, C, H, W)
        channels = np.arange(x.shape[1])[None, :, None, None]
        return torch.from_numpy(self.table[channels, ctx])  # (B, C, H, W, K)

    def decode(self, n, decode_fn, cond=None, progress=False):
        c, h, w = self.image_shape
        canvas = np.zeros((n, c, h, w), dtype=np.int64)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    left = canvas[:, k, i, j - 1] if j else 0
                    up = canvas[:, k, i - 1, j] if i else 0
                    tables = self.table[k, self._context(left, up) * np.ones(n, dtype=np.int64)]  # (n, K) numpy
                    canvas[:, k, i, j] = np.asarray(decode_fn(tables, i, j, k))
        return torch.from_numpy(canvas)

    def bits(self, x):
        f = self.frequencies(x).numpy()
        p = np.take_along_axis(f, np.asarray(x)[..., None], -1)[..., 0] / (1 << self.precision)
        return -np.log2(p).sum(axis=(1, 2, 3))

    def save(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "toy.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, folder):
        config = json.loads((Path(folder) / "toy.json").read_text())
        return cls(config["image_shape"], config["num_levels"], config["precision"], config["seed"], config["contexts"])
