"""``IntegerModel``: an exact integer network and its output distribution, as frequency tables.

See the package docstring for the API. Files: ``integer.json`` (the config) and ``integer.safetensors`` (every
integer tensor: weights, biases, multipliers, shifts, clamps, tables); no pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from pixelmodels.quantized import arith
from pixelmodels.quantized.output import make_head
from pixelmodels.quantized.tables import Formats, Tables

FORMAT = "pixelmodels-integer"
VERSION = 1
CONFIG_FILE, TENSOR_FILE = "integer.json", "integer.safetensors"

DecodeFn = Callable[[np.ndarray, int, int, int], np.ndarray]


def _network(cfg: dict, store: dict[str, torch.Tensor], tables: Tables):
    from pixelmodels.quantized.gated import IntGatedNet
    from pixelmodels.quantized.pixelcnn import IntPixelCNN

    nets = {"gated_pixelcnn": IntGatedNet, "pixelcnn": IntPixelCNN}
    if cfg.get("format") != FORMAT or cfg.get("version") != VERSION or cfg.get("family") not in nets:
        raise ValueError(f"not a version-{VERSION} integer model of a supported family: {cfg.get('family')!r}")
    return nets[cfg["family"]](cfg, store, tables)


class IntegerModel:
    """An integer network whose frequency tables are bit-identical on every machine (see ``quantize``)."""

    def __init__(self, config: dict, tensors: dict[str, torch.Tensor], device: str | torch.device = "cpu"):
        self.config = json.loads(json.dumps(config))  # JSON-able, owned
        self.tensors = dict(tensors)
        self.image_shape = tuple(int(s) for s in config["image_shape"])
        self.num_levels = int(config["num_levels"])
        self.precision = int(config["precision"])
        self.num_classes = config["model"].get("num_classes")
        self.device = torch.device(device)
        tables = Tables(self.tensors, Formats(**config["formats"]), self.num_levels).to(self.device)
        self.net = _network(self.config, self.tensors, tables).to(self.device)
        self.head = make_head(self.config, tables)
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the config JSON and every tensor (name, dtype, shape, bytes)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
            for name in sorted(self.tensors):
                t = self.tensors[name].contiguous()
                digest.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def to(self, device: str | torch.device) -> IntegerModel:
        """The same model on another device (CPU or CUDA): the tables it computes are identical."""
        return IntegerModel(self.config, self.tensors, device)

    # ----- input checks -------------------------------------------------------------------------------------
    def _images(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dtype.is_floating_point or x.dtype == torch.bool or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images must be integers of shape (B, {', '.join(map(str, self.image_shape))}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if x.numel() and (x.min() < 0 or x.max() >= self.num_levels):
            raise ValueError(f"image values must be in [0, {self.num_levels})")
        return x.long().to(self.device)

    def _labels(self, cond, n: int) -> torch.Tensor | None:
        if self.num_classes is None:
            if cond is not None:
                raise ValueError("this integer model is unconditional: pass cond=None")
            return None
        if cond is None:
            return torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)  # "no label"
        labels = (
            torch.as_tensor(cond, device=self.device).long().reshape(-1).expand(n)
            if torch.as_tensor(cond).numel() == 1
            else torch.as_tensor(cond, device=self.device).long()
        )
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"cond must be {n} class labels in [0, {self.num_classes})")
        return labels

    # ----- the coding interface -----------------------------------------------------------------------------
    def frequencies(self, x, cond=None) -> torch.Tensor:
        """Teacher-forced tables of every sub-pixel, int64 (B, C, H, W, K): one pass of the network."""
        x = self._images(x)
        b, c, h, w = x.shape
        with arith.exact_kernels():
            params = self.net.forward(x, self._labels(cond, b))  # (B, P, H, W)
            flat = params.permute(0, 2, 3, 1).reshape(b * h * w, -1)  # (N, P)
            pixels = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # (N, C)
            tables = [self.head.tables_at(flat, pixels, ch).view(b, h, w, -1) for ch in range(c)]
        return torch.stack(tables, dim=1)  # (B, C, H, W, K)

    def bits(self, x, cond=None) -> torch.Tensor:
        """The exact code length of each image in bits, float64 (B,)."""
        x = self._images(x)
        freqs = self.frequencies(x, cond).gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (B, C, H, W)
        return (self.precision - torch.log2(freqs.double())).sum(dim=(1, 2, 3))

    def decode(self, n: int, decode_fn: DecodeFn, cond=None, progress: bool = False) -> torch.Tensor:
        """Fill n images in raster order, R -> G -> B in a pixel; ``decode_fn(tables (n, K) int64, h, w, c)``
        returns the n values of that sub-pixel (the encoder's: the true ones). Returns (n, C, H, W) int64."""
        c, height, width = self.image_shape
        labels = self._labels(cond, n)
        x = torch.zeros(n, c, height, width, dtype=torch.long, device=self.device)
        joint = self.config["head"]["name"] == "dmol"  # one network step per pixel, else one per sub-pixel
        with arith.exact_kernels():
            stepper = self.net.stepper(n, height, width, labels)
            for i in tqdm(range(height), disable=not progress, desc="decoding rows", leave=False):
                stepper.start_row(x, i)
                for j in range(width):
                    params = None
                    for ch in range(c):
                        if params is None or not joint:
                            params = stepper.params(x, i, j)  # (n, P)
                        tables = self.head.tables_at(params, x[:, :, i, j], ch).cpu().numpy()  # (n, K)
                        values = np.asarray(decode_fn(tables, i, j, ch)).astype(np.int64).reshape(n)
                        x[:, ch, i, j] = torch.from_numpy(values).to(self.device)
                    stepper.commit(x, i, j)
        return x

    # ----- files --------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(folder / TENSOR_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> IntegerModel:
        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            tensors = load_file(str(folder / TENSOR_FILE))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder}: not an integer model ({err})") from None
        return cls(config, tensors, device)


def load(folder: str | Path, device: str | torch.device = "cpu") -> IntegerModel:
    """``IntegerModel.load``."""
    return IntegerModel.load(folder, device)
