"""Pictures: image grids, completion and class grids, training curves, receptive-field maps, NLL heat maps.

Everything here draws; the numbers come from ``pixelmodels.explain`` (receptive fields, per-pixel NLL) and
from the model's own sampler. Every writer renders the whole picture in memory and then writes it through
``write_png``: a temporary file beside the target, moved into place with ``os.replace``, so a failed or
interrupted call never leaves a partial file and never clobbers a good one.

Sizes are exact and documented per function (tests check them): a picture is a tiling of equal cells of
``H*scale x W*scale`` pixels separated by ``pad`` pixels, with optional text strips.
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from pixelmodels.imagefiles import ImageFileError, open_image

# Colours of the receptive-field map (RGB).
TARGET = (220, 30, 30)  # the sub-pixel whose distribution we look at
SEEN = (30, 80, 200)  # earlier sub-pixels that influence it (shade = gradient magnitude)
BLIND = (255, 170, 0)  # earlier sub-pixels it could use but does not see (the PixelCNN blind spot)
FUTURE = (225, 225, 225)  # sub-pixels at or after it in the generation order (must never be seen)
LEAK = (255, 0, 255)  # a future sub-pixel that influences it: a causality bug, never expected
TEXT_HEIGHT = 14
RF_MIN_WIDTH = 360  # room for the receptive-field legend
HEADER_MIN_WIDTH = 280  # room for the completion grid's header
BACKGROUND = 255


# ----- writing ----------------------------------------------------------------------------------------------
def write_png(image: Image.Image | np.ndarray, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (temp file + ``os.replace``); creates the parent folder. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {str(path)!r}")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes_atomic(buffer.getvalue(), path)
    return path


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a directory, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_image(
    path: str | os.PathLike, image_shape: Sequence[int], num_levels: int, resize: bool = False
) -> torch.Tensor:
    """Read a PNG/JPEG as a (C, H, W) long tensor in [0, K) for a model of ``image_shape`` and K levels.

    8-bit values v become ``v * K // 256`` (the data sets' quantization), except for pictures this module
    wrote: when every value is one of the K grey levels ``to_rgb`` draws, they map back exactly.
    A size other than (H, W) is an error unless ``resize`` (then: bilinear resize to (H, W)).
    """
    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"can only read 1- or 3-channel images, the model takes {c} channels")
    if num_levels > 256:
        raise ImageFileError(f"can only read 8-bit images, the model takes {num_levels} levels")
    img = open_image(path).convert("L" if c == 1 else "RGB")  # ImageFileError: truncated, 16-bit, transparent...
    if img.size != (w, h):
        if not resize:
            raise ImageFileError(
                f"image {str(path)!r} is {img.size[1]}x{img.size[0]}, the model takes {h}x{w} (pass --resize)"
            )
        img = img.resize((w, h), Image.BILINEAR)
    array = np.asarray(img, dtype=np.int64).reshape(h, w, c)
    x = torch.from_numpy(array).permute(2, 0, 1)  # (C, H, W) in [0, 255]
    drawn_levels = torch.from_numpy(to_uint8(torch.arange(num_levels).view(1, 1, 1, -1), num_levels)).long().flatten()
    exact = torch.isin(x, drawn_levels)
    if bool(exact.all()):
        return torch.searchsorted(drawn_levels, x.contiguous())
    return x * num_levels // 256


# ----- array helpers ----------------------------------------------------------------------------------------
def to_rgb(images: torch.Tensor, num_levels: int) -> np.ndarray:
    """Integer images (B, C, H, W) in [0, K) with C in {1, 3} -> uint8 RGB (B, H, W, 3), K-1 mapped to 255."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"can only draw 1- or 3-channel images, got {images.shape[1]} channels")
    if images.dtype.is_floating_point or images.dtype == torch.bool:
        raise ValueError(f"images must be integers in [0, {num_levels}), got {images.dtype}")
    x = images.detach().cpu().long()
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_levels):
        raise ValueError(f"image values must be in [0, {num_levels}), got min {int(x.min())} max {int(x.max())}")
    rgb = to_uint8(x, num_levels)  # (B, H, W, C)
    return rgb.repeat(3, axis=3) if rgb.shape[3] == 1 else rgb  # (B, H, W, 3)


def upscale(cell: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) array: every pixel becomes a scale x scale block."""
    return cell.repeat(scale, axis=0).repeat(scale, axis=1)


def tile(rows: Sequence[Sequence[np.ndarray | None]], pad: int = 2, background: int = BACKGROUND) -> np.ndarray:
    """Tile equal-sized (h, w, 3) cells; None leaves a cell blank. Size: (R*h + (R+1)*pad, N*w + (N+1)*pad)."""
    cells = [c for row in rows for c in row if c is not None]
    if not cells:
        raise ValueError("nothing to draw")
    h, w = cells[0].shape[:2]
    n = max(len(row) for row in rows)
    out = np.full((len(rows) * h + (len(rows) + 1) * pad, n * w + (n + 1) * pad, 3), background, np.uint8)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is not None:
                top, left = pad + i * (h + pad), pad + j * (w + pad)
                out[top : top + h, left : left + w] = cell
    return out


def auto_scale(height: int, width: int, target: int = 96) -> int:
    """The integer upscaling that makes an image about ``target`` pixels on its longer side."""
    return max(1, math.ceil(target / max(height, width)))


@functools.cache
def font(size: int = 11) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib), else Pillow's default font."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default(size=size)


def add_text_rows(picture: np.ndarray, lines: Sequence[str], where: str = "bottom", min_width: int = 0) -> Image.Image:
    """Add ``len(lines)`` text strips of TEXT_HEIGHT pixels below (or above) a picture, widening the canvas to
    ``min_width`` (picture left-aligned) so the text fits."""
    h, w = picture.shape[:2]
    extra = TEXT_HEIGHT * len(lines)
    canvas = Image.new("RGB", (max(w, min_width), h + extra), (BACKGROUND,) * 3)
    top = 0 if where == "bottom" else extra
    canvas.paste(Image.fromarray(picture), (0, top))
    draw = ImageDraw.Draw(canvas)
    y0 = h if where == "bottom" else 0
    for i, line in enumerate(lines):
        draw.text((3, y0 + i * TEXT_HEIGHT + 1), line, fill=(0, 0, 0), font=font())
    return canvas


# ----- grids ------------------------------------------------------------------------------------------------
def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    num_levels: int,
    nrow: int | None = None,
    scale: int | None = None,
    padding: int = 1,
) -> Path:
    """Save images (N, C, H, W) with values in [0, K) as one PNG grid, ``nrow`` images per row.

    ``nrow`` defaults to a square-ish grid; ``scale`` enlarges each pixel (nearest neighbour; default: so that
    an image is at least 32 pixels tall); ``padding`` pixels of white separate the images.
    Size: rows = ceil(N / nrow); (rows*H*scale + (rows+1)*padding) x (min(N, nrow)*W*scale + (min(N, nrow)+1)*padding).
    """
    n, h = len(images), images.shape[-2] if images.dim() == 4 else 1
    nrow = nrow or math.ceil(math.sqrt(max(n, 1)))
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    scale = scale or max(1, math.ceil(32 / h))
    cells = [upscale(c, scale) for c in to_rgb(images, num_levels)]
    grid = tile([cells[i : i + nrow] for i in range(0, len(cells), nrow)], padding)  # (H', W', 3)
    return write_png(grid[:, :, 0] if images.shape[1] == 1 else grid, path)  # grey images -> an 8-bit grey PNG


def to_uint8(images: torch.Tensor, num_levels: int) -> np.ndarray:
    """Levels in [0, K) -> 8-bit values, level k -> round(255 k / (K - 1)); (N, C, H, W) -> (N, H, W, C)."""
    x = images.detach().cpu().double() * (255.0 / (num_levels - 1))
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def keep_top_mask(image_shape: Sequence[int], keep_top: float) -> torch.Tensor:
    """Boolean (C, H, W) mask of the top ``round(keep_top * H)`` rows: the given part of a completion."""
    if not 0.0 <= keep_top < 1.0:
        raise ValueError(f"keep_top must be in [0, 1), got {keep_top}")
    c, h, w = image_shape
    mask = torch.zeros(c, h, w, dtype=torch.bool)
    mask[:, : round(keep_top * h)] = True
    return mask


@torch.no_grad()
def complete(
    model,
    images: torch.Tensor,
    num_completions: int = 4,
    keep_top: float = 0.5,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Complete each image from its top ``keep_top`` rows, ``num_completions`` times.

    Returns (completions (B, N, C, H, W), known_mask (C, H, W)).
    """
    model.check_images(images)
    if num_completions < 1:
        raise ValueError(f"num_completions must be >= 1, got {num_completions}")
    mask = keep_top_mask(model.image_shape, keep_top)
    b, n = images.shape[0], num_completions
    device = next(model.parameters()).device
    known = images.to(device).repeat_interleave(n, dim=0)  # (B*N, C, H, W)
    if cond is not None:
        cond = torch.as_tensor(cond, device=device).expand(b).repeat_interleave(n)
    out = model.sample(b * n, cond=cond, known=known, known_mask=mask.to(device), generator=generator)
    return out.view(b, n, *model.image_shape).cpu(), mask


#: Added to a third of the pixel values of the hidden rows in completion grids: orange-brown, so a hidden row is
#: never mistaken for a black one (black becomes (160, 80, 0), white (245, 165, 85)).
HIDDEN_TINT = np.array([160, 80, 0], dtype=np.uint8)


def save_completion_grid(
    originals: torch.Tensor,
    completions: torch.Tensor,
    known_mask: torch.Tensor,
    path: str | os.PathLike,
    num_levels: int,
    *,
    scale: int = 1,
    pad: int = 2,
) -> Path:
    """One row per image: the given part (hidden part dimmed), N completions, then the original.

    Size: B rows and N+2 columns of (H*scale x W*scale) cells (at least HEADER_MIN_WIDTH wide), plus a header
    strip of TEXT_HEIGHT pixels.
    """
    b, n = completions.shape[:2]
    if originals.shape[0] != b or tuple(originals.shape[1:]) != tuple(completions.shape[2:]):
        raise ValueError(f"originals {tuple(originals.shape)} do not match completions {tuple(completions.shape)}")
    shown = to_rgb(originals, num_levels)  # (B, H, W, 3)
    hidden = ~known_mask.all(dim=0).cpu().numpy()  # (H, W): rows the model had to fill in
    given = shown.copy()
    given[:, hidden] = given[:, hidden] // 3 + HIDDEN_TINT  # tinted: "not given", never read as black pixels
    done = to_rgb(completions.reshape(b * n, *completions.shape[2:]), num_levels).reshape(b, n, *shown.shape[1:])
    rows = [[upscale(given[i], scale)] + [upscale(c, scale) for c in done[i]] + [upscale(shown[i], scale)]
            for i in range(b)]  # fmt: skip
    header = "given (hidden part tinted) | completions | original"
    return write_png(add_text_rows(tile(rows, pad), [header], where="top", min_width=HEADER_MIN_WIDTH), path)


@torch.no_grad()
def class_samples(
    model, per_class: int = 8, generator: torch.Generator | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """``per_class`` samples of every class of a class-conditional model: (num_classes, per_class, C, H, W)."""
    k = model.num_classes
    if not k:
        raise ValueError(f"model {model.model_name!r} is not class-conditional (num_classes is None)")
    cond = torch.arange(k).repeat_interleave(per_class)
    out = model.sample(k * per_class, cond=cond, generator=generator, temperature=temperature)
    return out.view(k, per_class, *model.image_shape).cpu()


def save_class_grid(
    samples: torch.Tensor,
    path: str | os.PathLike,
    num_levels: int,
    *,
    labels: Sequence[str] | None = None,
    scale: int = 1,
    pad: int = 2,
) -> Path:
    """One row per class (``samples`` is (K, N, C, H, W)), the class label written left of its row.

    Size: a (K x N)-cell tiling with a label column of 28 pixels on the left.
    """
    k, n = samples.shape[:2]
    labels = [str(i) for i in range(k)] if labels is None else list(labels)
    cells = to_rgb(samples.reshape(k * n, *samples.shape[2:]), num_levels)
    grid = tile([[upscale(c, scale) for c in cells[i * n : (i + 1) * n]] for i in range(k)], pad)
    label_width = 28
    canvas = Image.new("RGB", (grid.shape[1] + label_width, grid.shape[0]), (BACKGROUND,) * 3)
    canvas.paste(Image.fromarray(grid), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    cell_h = samples.shape[3] * scale
    for i, label in enumerate(labels):
        draw.text((2, pad + i * (cell_h + pad) + max(0, cell_h // 2 - 6)), label[:4], fill=(0, 0, 0), font=font())
    return write_png(canvas, path)


# ----- training curves --------------------------------------------------------------------------------------
def plot_curves(curves: dict[str, dict[str, list[float]]], path: str | os.PathLike, title: str = "") -> Path:
    """Bits/dim against step (left) and against wall-clock time (right), one line per split.

    ``curves`` maps a split name ("train", "validation") to {"step": [...], "time": [...], "bpd": [...]}
    (see ``pixelmodels.report.read_curves``). Size: 1000 x 400 pixels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {str(path)!r}")
    if not any(c["bpd"] for c in curves.values()):
        raise ValueError("no bits/dim values to plot")
    fig = Figure(figsize=(10, 4), dpi=100)
    axes = fig.subplots(1, 2)
    for split, c in curves.items():
        style = dict(marker="o", markersize=3) if split != "train" else dict(linewidth=1)
        axes[0].plot(c["step"], c["bpd"], label=split, **style)
        if c.get("time") and len(c["time"]) == len(c["bpd"]):
            axes[1].plot(c["time"], c["bpd"], label=split, **style)
    for ax, xlabel in zip(axes, ["step", "wall-clock time (s)"], strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("bits/dim")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(buffer.getvalue(), path)
    return Path(path)


# ----- receptive field --------------------------------------------------------------------------------------
def receptive_field_panels(
    magnitude: torch.Tensor, context: torch.Tensor, position: tuple[int, int], channel: int, scale: int
) -> list[np.ndarray]:
    """One (H*scale, W*scale, 3) panel per input channel: target, seen (shaded by gradient), blind, future."""
    c, h, w = magnitude.shape
    seen = (magnitude > 0).numpy()
    context = context.numpy()
    # Shade seen sub-pixels by log gradient magnitude: the strongest are dark blue, the weakest pale.
    logm = np.log10(np.where(seen, magnitude.numpy(), 1.0))
    lo, hi = (logm[seen].min(), logm[seen].max()) if seen.any() else (0.0, 1.0)
    strength = np.where(seen, 0.35 + 0.65 * (logm - lo) / max(hi - lo, 1e-12), 0.0)  # (C, H, W) in [0.35, 1]
    panels = []
    for ci in range(c):
        rgb = np.empty((h, w, 3), np.float64)
        rgb[:] = FUTURE
        rgb[context[ci]] = BLIND
        s = strength[ci][..., None]  # (H, W, 1)
        shaded = (1 - s) * 255 + s * np.array(SEEN)
        rgb = np.where(seen[ci][..., None] & context[ci][..., None], shaded, rgb)
        rgb[seen[ci] & ~context[ci]] = LEAK
        if ci == channel:
            rgb[position] = TARGET
        panels.append(_grid_lines(upscale(rgb.astype(np.uint8), scale), scale))
    return panels


def order_panel(rank: torch.Tensor, channel: int, scale: int) -> np.ndarray:
    """The generation order of one channel as a grey ramp: first step black, last step white."""
    r = rank[channel].double()
    grey = (255 * (r - rank.min()) / max(int(rank.max() - rank.min()), 1)).round().byte().numpy()  # (H, W)
    return _grid_lines(upscale(np.repeat(grey[..., None], 3, axis=2), scale), scale)


def _grid_lines(panel: np.ndarray, scale: int) -> np.ndarray:
    if scale >= 6:  # pixel borders help count positions on small images
        panel = panel.copy()
        panel[::scale, :] = (panel[::scale, :] * 0.8).astype(np.uint8)
        panel[:, ::scale] = (panel[:, ::scale] * 0.8).astype(np.uint8)
    return panel


def save_receptive_field(
    magnitude: torch.Tensor,
    context: torch.Tensor,
    rank: torch.Tensor,
    position: tuple[int, int],
    channel: int,
    path: str | os.PathLike,
    *,
    title: str = "",
    scale: int | None = None,
    pad: int = 4,
) -> Path:
    """Draw a receptive field: one panel per input channel, then the generation order of ``channel``.

    Args:
        magnitude: (C, H, W) gradient magnitudes (``explain.receptive_field``); > 0 means "influences".
        context: (C, H, W) bool, the sub-pixels generated before the target (``explain.context_mask``).
        rank: (C, H, W) generation step of each sub-pixel (``ordering.rank_map``).
    Size: (C+1) panels of (H*scale x W*scale) in one row with ``pad`` between and around (at least
    RF_MIN_WIDTH wide), plus 4 text strips below (title, panels, legend with counts) of TEXT_HEIGHT pixels.
    """
    c, h, w = magnitude.shape
    scale = scale or auto_scale(h, w, 160)
    panels = receptive_field_panels(magnitude.detach().cpu(), context.cpu(), position, channel, scale)
    panels.append(order_panel(rank.cpu(), channel, scale))
    picture = tile([panels], pad)
    seen = magnitude > 0
    names = "RGB" if c == 3 else [str(i) for i in range(c)]
    lines = [
        title or f"receptive field of channel {channel} at (h={position[0]}, w={position[1]})",
        "panels: input channel " + ", ".join(names) + " | generation order",
        f"red: target   blue: seen ({int((seen & context).sum())})   orange: blind ({int((~seen & context).sum())})",
        f"grey: later in the order   magenta: leak ({int((seen & ~context).sum())})",
    ]
    return write_png(add_text_rows(picture, lines, min_width=RF_MIN_WIDTH), path)


# ----- per-pixel NLL heat maps ------------------------------------------------------------------------------
def heat_colors(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] to the 'inferno' colour map: (..., 3) uint8."""
    from matplotlib import colormaps

    normed = np.clip(values / max(vmax, 1e-12), 0.0, 1.0)
    return (colormaps["inferno"](normed)[..., :3] * 255).round().astype(np.uint8)


def save_nll_map(
    images: torch.Tensor,
    nll: torch.Tensor,
    path: str | os.PathLike,
    num_levels: int,
    *,
    names: Sequence[str] | None = None,
    scale: int | None = None,
    pad: int = 4,
    vmax: float | None = None,
) -> Path:
    """Images beside their per-pixel NLL heat maps (bits, summed over channels), one row per image.

    The colour scale (0 to ``vmax`` bits, default: the largest value) is shared by all rows and drawn as a bar
    at the bottom; each row's bits/dim is written to its right.
    Size: B rows of 2 cells (H*scale x W*scale) + a text column of 150 pixels, then a 12-pixel colour bar
    and one text strip.
    """
    b, c, h, w = images.shape
    if tuple(nll.shape) != (b, h, w):
        raise ValueError(f"nll map shape {tuple(nll.shape)} does not match images {tuple(images.shape)}")
    scale = scale or auto_scale(h, w, 96)
    nll = nll.detach().cpu().double().numpy()
    vmax = float(nll.max()) if vmax is None else float(vmax)
    pictures = to_rgb(images, num_levels)
    grid = tile([[upscale(pictures[i], scale), upscale(heat_colors(nll[i], vmax), scale)] for i in range(b)], pad)
    text_width, bar = 150, 12
    canvas = Image.new("RGB", (grid.shape[1] + text_width, grid.shape[0] + bar + TEXT_HEIGHT), (BACKGROUND,) * 3)
    canvas.paste(Image.fromarray(grid), (0, 0))
    draw = ImageDraw.Draw(canvas)
    cell = h * scale
    for i in range(b):
        bpd = nll[i].sum() / (c * h * w)
        label = f"{bpd:.3f} bits/dim"
        if names is not None:
            label = f"{names[i][:18]}\n{label}"
        draw.multiline_text((grid.shape[1] + 2, pad + i * (cell + pad) + 2), label, fill=(0, 0, 0), font=font())
    ramp = heat_colors(np.linspace(0, vmax, grid.shape[1] - 2 * pad)[None, :].repeat(bar - 2, 0), vmax)
    canvas.paste(Image.fromarray(ramp), (pad, grid.shape[0]))
    draw.text((3, grid.shape[0] + bar), f"0 to {vmax:.2f} bits per pixel (all channels)", fill=(0, 0, 0), font=font())
    return write_png(canvas, path)
