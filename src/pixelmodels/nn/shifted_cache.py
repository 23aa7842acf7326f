"""Kernel-tall caches for shifted convolutions, and the PixelCNN++ stepper built from them (Ramachandran et al.
2017, "Fast Generation for Convolutional Autoregressive Models", ICLR workshop, sections 3-4; their
``fast_pixel_cnn_pp``).

Every shifted convolution keeps only the last ``kh`` rows of its input at its own resolution:

- ``RowCache`` (down-shifted convolutions of the ``u`` stream, which sees only rows above): a new input row is
  pushed and the output row computed at once;
- ``PixelCache`` (down-right-shifted convolutions of the ``ul`` stream): a new input pixel is written and the
  output at one position computed; ``new_row`` rolls the rows when the layer's row advances.

``PixelCNNPPStepper`` runs the whole PixelCNN++ network (``models/pixelcnn_pp.py``) incrementally:

- once per image row i, ``start_row`` advances the ``u`` stream by one row at every resolution l where row i is
  due (i divisible by 2^l): up pass from full resolution down, then down pass back up. The down pass at level l
  reads the transposed convolution of the last down-pass row of level l+1 (row q of level l reads row q // 2);
- once per pixel (i, j), ``pixel`` advances the ``ul`` stream at every level l where (i, j) is due (both
  divisible by 2^l): the up-pass outputs of level l at (i >> l, j >> l) are computed and consumed by the down
  pass of the same level in the same step, and a transposed down-right convolution turns the last down-pass
  row of level l+1 into the pixel (q, p) of level l (kernel tap (q % 2, p % 2) at (q // 2, p // 2)).

What the ``ul`` blocks read of the ``u`` stream (the 1x1 short-cuts) is projected once per row. Nothing here
depends on the image size being a power of two: a level's size is ceil(previous / 2), as in the full pass.
Dropout is skipped (samplers run in eval mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelmodels.nn.shifted import DownRightShiftedConv2d, DownShiftedConv2d, concat_elu


class RowCache:
    """The last ``kh`` input rows of a ``DownShiftedConv2d`` (any stride); one output row per pushed row.

    With stride 2 the output row r reads input rows 2r-1 and 2r: push every input row, read the output after
    the even ones.
    """

    def __init__(self, conv: DownShiftedConv2d, batch: int, width: int):
        kh, _ = conv.kernel_size
        left, right, _, _ = conv.shift_padding
        self.weight, self.bias, self.stride = conv.weight, conv.bias, (1, conv.stride[1])
        self.left, self.width = left, width
        self.buffer = conv.weight.new_zeros(batch, conv.in_channels, kh, width + left + right)  # zero = padding

    def push(self, row: torch.Tensor) -> None:
        """Append input row (B, C_in, W); the oldest row drops out."""
        if self.buffer.shape[2] > 1:
            self.buffer[:, :, :-1] = self.buffer[:, :, 1:].clone()
        self.buffer[:, :, -1, self.left : self.left + self.width] = row

    def output(self) -> torch.Tensor:
        """The convolution's output row ending at the last pushed row, (B, C_out, W_out)."""
        return F.conv2d(self.buffer, self.weight, self.bias, stride=self.stride)[:, :, 0]


class PixelCache:
    """The last ``kh`` input rows of a ``DownRightShiftedConv2d`` (any stride), written one pixel at a time.

    Laid out (B, kh, W + kw - 1, C_in) so that a pixel is one contiguous write; the output at column p reads
    input columns p*s - kw + 1 .. p*s of the rows held.
    """

    def __init__(self, conv: DownRightShiftedConv2d, batch: int, width: int):
        kh, kw = conv.kernel_size
        self.kw, self.stride = kw, conv.stride[1]
        self.flat = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (C_out, kh*kw*C_in)
        self.bias = conv.bias
        self.buffer = conv.weight.new_zeros(batch, kh, width + kw - 1, conv.in_channels)

    def new_row(self) -> None:
        """The layer's input moves to its next row (the current one becomes the row above)."""
        if self.buffer.shape[1] > 1:
            self.buffer[:, :-1] = self.buffer[:, 1:].clone()

    def write(self, j: int, value: torch.Tensor) -> None:
        """Store the input at column j of the current row; value (B, C_in)."""
        self.buffer[:, -1, j + self.kw - 1] = value

    def output(self, p: int) -> torch.Tensor:
        """The output at column p of the current output row, (B, C_out)."""
        start = p * self.stride
        window = self.buffer[:, :, start : start + self.kw]  # (B, kh, kw, C_in)
        return F.linear(window.reshape(window.shape[0], -1), self.flat, self.bias)


def _gate(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    a, b = h.chunk(2, dim=1)
    return x + a * torch.sigmoid(b)


class BlockStepper:
    """One ``GatedResNet`` (models/pixelcnn_pp.py), a row (``row``) or a pixel (``pixel``) at a time.

    The short-cut input arrives already projected by the block's 1x1 ``shortcut`` (``project_row`` /
    ``project_pixel``), since the ``ul`` blocks' short-cut from the ``u`` stream is computed once per row.
    """

    def __init__(self, block, batch: int, width: int, by_row: bool, cond: torch.Tensor | None):
        cache = RowCache if by_row else PixelCache
        self.conv_in, self.conv_out = cache(block.conv_in, batch, width), cache(block.conv_out, batch, width)
        self.class_bias = None if block.class_bias is None or cond is None else block.class_bias(cond)  # (B, 2F)
        self.shortcut, self._shortcuts = block.shortcut, {}

    def _shortcut(self, first: int, count: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The 1x1 short-cut's weight (F, 2*count) on channels first..first+count of its input a (both halves of
        concat_elu(a) = [elu(a), elu(-a)]), for a short-cut made of concatenated parts; the bias goes with part 0."""
        key = (first, count)
        if key not in self._shortcuts:
            weight, half = self.shortcut.weight[:, :, 0, 0], self.shortcut.weight.shape[1] // 2
            count = half if count is None else count
            cols = list(range(first, first + count)) + list(range(half + first, half + first + count))
            self._shortcuts[key] = (weight[:, cols].contiguous(), self.shortcut.bias if first == 0 else None)
        return self._shortcuts[key]

    def project_row(self, a: torch.Tensor, first: int = 0, count: int | None = None) -> torch.Tensor:
        """The short-cut's contribution from rows ``a`` (B, count, W) -> (B, F, W)."""
        weight, bias = self._shortcut(first, count)
        return F.conv1d(concat_elu(a), weight[:, :, None], bias)

    def project_pixel(self, a: torch.Tensor, first: int = 0, count: int | None = None) -> torch.Tensor:
        """The short-cut's contribution from one pixel's ``a`` (B, count) -> (B, F)."""
        return F.linear(concat_elu(a), *self._shortcut(first, count))

    def row(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, F, W) -> the block's output row (B, F, W); shortcut: the projected short-cut (B, F, W)."""
        self.conv_in.push(concat_elu(x))
        h = self.conv_in.output()
        if shortcut is not None:
            h = h + shortcut
        self.conv_out.push(concat_elu(h))
        h = self.conv_out.output()  # (B, 2F, W)
        if self.class_bias is not None:
            h = h + self.class_bias[:, :, None]
        return _gate(x, h)

    def pixel(self, p: int, x: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
        """x (B, F) at column p of the current row -> the block's output there (B, F)."""
        self.conv_in.write(p, concat_elu(x))
        h = self.conv_in.output(p)
        if shortcut is not None:
            h = h + shortcut
        self.conv_out.write(p, concat_elu(h))
        h = self.conv_out.output(p)  # (B, 2F)
        if self.class_bias is not None:
            h = h + self.class_bias
        return _gate(x, h)

    def new_row(self) -> None:
        self.conv_in.new_row()
        self.conv_out.new_row()


class PixelCNNPPStepper:
    """Incremental evaluation of a ``PixelCNNPP``'s two streams, for raster-order sampling (module docstring).

    ``start_row(prev, i)`` before the first pixel of row i (prev: image row i-1 scaled, (B, C, W), None for
    i = 0); ``pixel(i, j)`` -> the final ``ul`` features at (i, j), (B, F); ``commit(inputs, j)`` once pixel
    (i, j) is final (inputs (B, C) scaled).
    """

    def __init__(self, model, batch: int, cond: torch.Tensor | None):
        _, height, width = model.image_shape
        self.model, self.levels = model, model.num_resolutions
        self.sizes = [(height, width)]
        for _ in range(1, self.levels):
            h, w = self.sizes[-1]
            self.sizes.append(((h + 1) // 2, (w + 1) // 2))
        widths = [w for _, w in self.sizes]
        f = model.hidden_channels
        self.u_init = RowCache(model.u_init, batch, width)
        self.ul_init_above = RowCache(model.ul_init_above, batch, width)
        self.ul_init_left = PixelCache(model.ul_init_left, batch, width)

        def blocks(stages, stage, level, by_row):
            return [BlockStepper(b, batch, widths[level], by_row, cond) for b in stages[stage]]

        last = self.levels - 1
        self.up_u = [blocks(model.up_u, level, level, True) for level in range(self.levels)]
        self.up_ul = [blocks(model.up_ul, level, level, False) for level in range(self.levels)]
        self.down_u = [blocks(model.down_u, last - level, level, True) for level in range(self.levels)]
        self.down_ul = [blocks(model.down_ul, last - level, level, False) for level in range(self.levels)]
        # resampling into level l (index l; None at the ends): down from l-1, up from l+1
        self.downsample_u = [None] + [RowCache(c, batch, widths[i]) for i, c in enumerate(model.downsample_u)]
        self.downsample_ul = [None] + [PixelCache(c, batch, widths[i]) for i, c in enumerate(model.downsample_ul)]
        self.upsample_u = list(reversed(model.upsample_u)) + [None]
        self.upsample_ul = [(c.weight, c.bias) for c in reversed(model.upsample_ul)] + [None]

        new = model.u_init.weight.new_zeros
        self.zero_row = new(batch, f, width)
        self.ul_above = new(batch, width, f)  # (B, W, F): ul_init_above's output one row up, this row
        self.up_u_rows: list[list] = [[] for _ in self.sizes]  # per level: the up pass's u rows, this row
        self.up_ul_short: list[list] = [[] for _ in self.sizes]  # per level, per up ul block: (B, W_l, F)
        self.down_ul_short: list[list] = [[] for _ in self.sizes]  # per level, per down ul block, u part
        self.down_u_last: list = [None] * self.levels  # per level: the down pass's last u row (B, F, W_l)
        self.down_ul_last = [new(batch, w, f) for w in widths]  # per level: the down pass's ul, last row

    def due(self, i: int) -> list[int]:
        """Levels whose row (or column) advances at full-resolution index i: those with i divisible by 2^l."""
        return [level for level in range(self.levels) if i % (1 << level) == 0]

    # ----- the u stream, once per row ----------------------------------------------------------------------
    def start_row(self, prev: torch.Tensor | None, i: int) -> None:
        due = self.due(i)
        for level in due:
            for blk in self.up_ul[level] + self.down_ul[level]:
                blk.new_row()
            if level + 1 < self.levels:
                self.downsample_ul[level + 1].new_row()
        self.ul_init_left.new_row()

        for level in due:  # up pass, full resolution first
            if level == 0:
                u = self.zero_row
                if prev is not None:
                    x = torch.cat([prev, prev.new_ones(prev.shape[0], 1, prev.shape[2])], dim=1)  # (B, C+1, W)
                    self.u_init.push(x)
                    self.ul_init_above.push(x)
                    u = self.u_init.output()  # (B, F, W): down-shifted, row i reads rows i-2, i-1
                    self.ul_above = self.ul_init_above.output().transpose(1, 2)  # (B, W, F)
            else:
                u = self.downsample_u[level].output()
            rows, short = [u], []
            for u_blk, ul_blk in zip(self.up_u[level], self.up_ul[level], strict=True):
                u = u_blk.row(u)
                rows.append(u)
                short.append(ul_blk.project_row(u).transpose(1, 2).contiguous())  # (B, W_l, F)
            if level + 1 < self.levels:
                self.downsample_u[level + 1].push(u)
            self.up_u_rows[level], self.up_ul_short[level] = rows, short

        f = self.zero_row.shape[1]
        for level in reversed(due):  # down pass, lowest resolution first
            q, rows = i >> level, self.up_u_rows[level]
            if level == self.levels - 1:
                u = rows.pop()
            else:
                low = self.down_u_last[level + 1].unsqueeze(2)  # (B, F, 1, W_{l+1}): row q // 2 of level l+1
                u = self.upsample_u[level](low, (2, self.sizes[level][1]))[:, :, q % 2]  # (B, F, W_l)
            short = []
            for u_blk, ul_blk in zip(self.down_u[level], self.down_ul[level], strict=True):
                a = rows.pop()
                u = u_blk.row(u, u_blk.project_row(a))
                # the u part of the ul block's [u, ul] short-cut, for the whole row
                short.append(ul_blk.project_row(u, 0, f).transpose(1, 2).contiguous())
            self.down_u_last[level], self.down_ul_short[level] = u, short

    # ----- the ul stream, once per pixel -------------------------------------------------------------------
    def pixel(self, i: int, j: int) -> torch.Tensor:
        due = [level for level in self.due(i) if j % (1 << level) == 0]
        f, outputs = self.zero_row.shape[1], []
        for level in due:  # up pass
            p = j >> level
            if level == 0:
                ul = self.ul_above[:, j]
                if j > 0:
                    ul = ul + self.ul_init_left.output(j - 1)  # right-shifted: (i, j) reads column j-1
            else:
                ul = self.downsample_ul[level].output(p)
            outs = [ul]
            for k, blk in enumerate(self.up_ul[level]):
                ul = blk.pixel(p, ul, self.up_ul_short[level][k][:, p])
                outs.append(ul)
            if level + 1 < self.levels:
                self.downsample_ul[level + 1].write(p, ul)
            outputs.append(outs)

        for level, outs in zip(reversed(due), reversed(outputs), strict=True):  # down pass
            q, p = i >> level, j >> level
            if level == self.levels - 1:
                ul = outs.pop()
            else:
                weight, bias = self.upsample_ul[level]  # (F_in, F_out, kh, kw)
                a, b = q % 2, p % 2
                ul = bias.expand(self.zero_row.shape[0], -1)
                if a < weight.shape[2] and b < weight.shape[3]:
                    ul = ul + self.down_ul_last[level + 1][:, p // 2] @ weight[:, :, a, b]
            for k, blk in enumerate(self.down_ul[level]):
                short = self.down_ul_short[level][k][:, p] + blk.project_pixel(outs.pop(), f, f)
                ul = blk.pixel(p, ul, short)
            self.down_ul_last[level][:, p] = ul
        return ul  # (B, F)

    def commit(self, inputs: torch.Tensor, j: int) -> None:
        self.ul_init_left.write(j, torch.cat([inputs, inputs.new_ones(inputs.shape[0], 1)], dim=1))
