"""Activation caches for fast incremental sampling of convolutional models (Ramachandran et al. 2017,
"Fast Generation for Convolutional Autoregressive Models", ICLR workshop, section 3).

A naive sampler reruns the whole network for every generated sub-pixel: O(H*W) work per step. A causal
convolution's output at pixel p only reads inputs at p and before it (raster order), so each layer can keep
the inputs it has already received and, when a new pixel arrives, compute its output at that one position
from the cache: O(kernel) work per layer per step, independent of the image size.

- ``ConvCache`` holds the input of one causal convolution (padded; only as many rows as the kernel reads:
  Ramachandran et al.'s kernel-tall cache) and produces the output at one pixel (``output_at``)
  or along one whole row (``output_row``, for stacks that only look at rows above, such as Gated PixelCNN's
  vertical stack, which advances a row at a time).
- ``PixelRunner`` runs ordinary modules on one pixel's feature vector (B, C): masked convolutions through a
  ``ConvCache`` each (created on first use), 1x1 convolutions as matrix products, element-wise activations
  directly. A model's fast sampler writes its forward pass once more, pixel-wise, with ``runner(module, x, i,
  j)`` in place of ``module(x)``.

Channel steps (R, G, B of one pixel) simply recompute the pixel's column: the cache entry at (i, j) is
overwritten, and since mask A/B never lets a channel group read later groups of its own pixel, the column
computed at the last channel step equals the full forward pass on the final image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pixelmodels.nn.masked import MaskedConv2d

#: Modules applied element-wise: they run unchanged on a (B, C) feature vector.
ELEMENTWISE = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Identity, nn.Dropout)


class ConvCache:
    """The input of one causal convolution, kept for incremental evaluation: the last ``kr`` rows only.

    The effective kernel ``weight`` (C_out, C_in, kr, kw) must not read rows below the output row: its last row
    lies on the output row and its column ``left`` on the output column (the caller crops the rows a mask
    zeroes). The buffer is as tall as the kernel (Ramachandran et al.'s kernel-tall cache): writing into a new
    row moves the rows up by one, dropping the oldest, and clears the new one. Rows are written top to bottom;
    inputs not yet written (and the padding) read as zeros, so any position a mask hides may be left unwritten.

    Args:
        weight: effective (already masked) kernel.
        bias: (C_out,) or None.
        batch, height, width: size of the generated images (``height`` does not size the buffer).
        left: kernel column aligned with the output column.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, batch: int, height: int, width: int, left: int):
        c_out, c_in, kr, kw = weight.shape
        if not 0 <= left < kw:
            raise ValueError(f"left must index a kernel column in [0, {kw}), got {left}")
        self.weight = weight.contiguous()
        self.flat = self.weight.reshape(c_out, c_in * kr * kw)  # (C_out, C_in*kr*kw)
        self.bias = bias
        self.rows, self.cols, self.left = kr, kw, left
        self.width = width
        self.row = -1  # the image row in the buffer's last slot
        # zero padding: `left` columns left and kw - 1 - left right (same as 'same' padding); rows above: zeros
        self.buffer = weight.new_zeros(batch, c_in, kr, width + kw - 1)  # (B, C_in, kr, W+kw-1)

    def _advance(self, i: int) -> None:
        """Make row i the last slot (the slots above hold rows i-kr+1..i-1)."""
        shift = i - self.row
        if shift == 0:
            return
        if not 0 < shift < self.rows:
            if shift < 0:
                raise ValueError(f"rows are written top to bottom: row {i} after row {self.row}")
            self.buffer.zero_()
        else:
            self.buffer[:, :, :-shift] = self.buffer[:, :, shift:].clone()
            self.buffer[:, :, -shift:] = 0
        self.row = i

    @classmethod
    def for_masked(cls, conv: MaskedConv2d, batch: int, height: int, width: int) -> ConvCache:
        """Cache for a ``MaskedConv2d``: the rows below the centre are masked out, so they are dropped."""
        kh, kw = conv.kernel_size
        weight = (conv.weight * conv.mask)[:, :, : kh // 2 + 1]  # (C_out, C_in, kh//2+1, kw)
        return cls(weight, conv.bias, batch, height, width, left=kw // 2)

    def write(self, i: int, j: int, value: torch.Tensor) -> None:
        """Store the layer's input at pixel (i, j); value (B, C_in)."""
        self._advance(i)
        self.buffer[:, :, -1, j + self.left] = value

    def write_row(self, i: int, row: torch.Tensor) -> None:
        """Store the layer's input along row i; row (B, C_in, W)."""
        self._advance(i)
        self.buffer[:, :, -1, self.left : self.left + self.width] = row

    def output_at(self, i: int, j: int) -> torch.Tensor:
        """The convolution's output at pixel (i, j), (B, C_out); row i must be the last row written."""
        self._check(i)
        window = self.buffer[:, :, :, j : j + self.cols]  # (B, C_in, kr, kw)
        return F.linear(window.reshape(window.shape[0], -1), self.flat, self.bias)

    def output_row(self, i: int) -> torch.Tensor:
        """The convolution's output along row i, (B, C_out, W); row i must be the last row written."""
        self._check(i)
        return F.conv2d(self.buffer, self.weight, self.bias)[:, :, 0]

    def _check(self, i: int) -> None:
        if i != self.row:
            raise ValueError(f"the cache holds rows up to {self.row}, not row {i}")

    def step(self, i: int, j: int, value: torch.Tensor) -> torch.Tensor:
        """Write the input at (i, j) and return the output there."""
        self.write(i, j, value)
        return self.output_at(i, j)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer."""
        return self.buffer.numel() * self.buffer.element_size()


def pointwise_weight(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution's (masked) kernel as a (C_out, C_in) matrix."""
    weight = conv.weight * conv.mask if isinstance(conv, MaskedConv2d) else conv.weight
    return weight[:, :, 0, 0]


class PixelRunner:
    """Evaluates a convolutional network one pixel at a time, caching what each convolution has seen.

    ``runner(module, x, i, j)`` applies ``module`` to the feature vector ``x`` (B, C_in) of pixel (i, j):
    element-wise modules directly, 1x1 convolutions as a matrix product, ``MaskedConv2d`` through its own
    ``ConvCache``, ``nn.Sequential`` module by module. Weights are read (and masked) once, at first use, so
    build a new runner for every sampling call.
    """

    def __init__(self, batch: int, height: int, width: int):
        self.batch, self.height, self.width = batch, height, width
        self._caches: dict[nn.Module, ConvCache] = {}
        self._ops: dict[nn.Module, Callable[[torch.Tensor, int, int], torch.Tensor]] = {}

    def cache(self, conv: MaskedConv2d) -> ConvCache:
        if conv not in self._caches:
            self._caches[conv] = ConvCache.for_masked(conv, self.batch, self.height, self.width)
        return self._caches[conv]

    def __call__(self, module: nn.Module, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        op = self._ops.get(module)
        if op is None:
            op = self._ops[module] = self._compile(module)
        return op(x, i, j)

    def _compile(self, module: nn.Module) -> Callable[[torch.Tensor, int, int], torch.Tensor]:
        """The pixel-wise version of ``module``, made once (the per-step cost is mostly Python overhead)."""
        if isinstance(module, nn.Sequential):
            ops = [self._compile(m) for m in module]

            def sequence(x, i, j):
                for op in ops:
                    x = op(x, i, j)
                return x

            return sequence
        if isinstance(module, nn.Dropout):
            return lambda x, i, j: x  # samplers run in eval mode
        if isinstance(module, ELEMENTWISE):
            return lambda x, i, j: module.forward(x)
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            weight, bias = pointwise_weight(module), module.bias
            return lambda x, i, j: F.linear(x, weight, bias)  # (B, C_out)
        if isinstance(module, MaskedConv2d):
            cache = self.cache(module)
            return lambda x, i, j: cache.step(i, j, x)
        raise TypeError(f"PixelRunner cannot run {type(module).__name__} one pixel at a time")
