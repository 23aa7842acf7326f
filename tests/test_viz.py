"""Pictures (viz), receptive fields and NLL maps (explain), results pages (report), picture commands (CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelmodels
from contract import build as build_variant
from model_variants import VARIANTS
from pixelmodels import explain, viz
from pixelmodels.cli import main
from pixelmodels.models.pixelcnn import PixelCNN
from pixelmodels.ordering import rank_map
from pixelmodels.report import RunInfo, read_curves, write_report

IDS = [v.id for v in VARIANTS]


def open_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Check ``path`` is a valid PNG of ``size`` = (width, height); return its RGB pixels (H, W, 3)."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        assert img.size == size, f"{path.name} is {img.size}, expected {size}"
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.min() < pixels.max(), f"{path.name} is a flat picture"
    return pixels


def colour_count(pixels: np.ndarray, colour) -> int:
    return int((pixels == np.array(colour, np.uint8)).all(-1).sum())


def accepts(variant, shape, k) -> bool:
    """``variant.accepts`` with the level count where the Variant type takes one."""
    try:
        return variant.accepts(shape, k)
    except TypeError:
        return variant.accepts(shape)


def tiny_pixelcnn(shape=(1, 8, 10), k=4, **kw):
    return pixelmodels.build("pixelcnn", image_shape=shape, num_levels=k, hidden_channels=6, num_layers=2, **kw)


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


# ----- receptive fields -------------------------------------------------------------------------------------
def test_pixelcnn_receptive_field_has_the_blind_spot():
    model = tiny_pixelcnn()
    h, w = 4, 4
    seen = explain.receptive_field(model, (h, w)) > 0  # (1, 8, 10)
    context = explain.context_mask(model, (h, w))
    # Masked 3x3 convolutions reach one column right per row up; the 7x7 mask-A conv reaches 3 columns right:
    # one row up, columns beyond w+3 are in the context (earlier in raster order) but never seen.
    assert context[0, h - 1, w + 4] and not seen[0, h - 1, w + 4]
    assert seen[0, h - 1, w + 3] and seen[0, h, w - 1] and seen[0, 0, 0]
    summary = explain.summarize_field(explain.receptive_field(model, (h, w)), context, (h, w))
    assert summary.blind > 0 and summary.leaks == 0


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape,k", [((1, 4, 4), 2), ((3, 4, 4), 4)], ids=["gray", "rgb"])
def test_receptive_field_is_causal_for_every_model(variant, shape, k):
    if not accepts(variant, shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with {k} levels")
    if getattr(variant, "skip_causality", None):
        pytest.skip(variant.skip_causality)
    model = build_variant(variant, shape, k)
    rank = rank_map(model.order(), *shape)
    for channel in sorted({0, shape[0] - 1}):
        for position in [(0, 1), (3, 2)]:
            seen = explain.receptive_field(model, position, channel) > 0
            allowed = rank < rank[channel, position[0], position[1]]
            assert torch.equal(allowed, explain.context_mask(model, position, channel))
            assert not (seen & ~allowed).any(), f"{variant.id} sees the future at {channel}, {position}"
            assert seen.any(), f"{variant.id} sees nothing at {channel}, {position}"


def test_receptive_field_rejects_bad_positions():
    model = tiny_pixelcnn()
    with pytest.raises(ValueError, match="position"):
        explain.receptive_field(model, (8, 0))
    with pytest.raises(ValueError, match="channel"):
        explain.receptive_field(model, (1, 1), channel=1)


def test_receptive_field_picture(tmp_path):
    model = tiny_pixelcnn(shape=(3, 8, 10))
    position, channel, scale, pad = (4, 4), 1, 8, 4
    magnitude = explain.receptive_field(model, position, channel)
    context = explain.context_mask(model, position, channel)
    rank = rank_map(model.order(), 3, 8, 10)
    path = viz.save_receptive_field(magnitude, context, rank, position, channel, tmp_path / "rf.png", scale=scale)
    panels = 3 + 1  # one per input channel, then the order
    width = max(panels * 10 * scale + (panels + 1) * pad, viz.RF_MIN_WIDTH)
    pixels = open_png(path, (width, 8 * scale + 2 * pad + 4 * viz.TEXT_HEIGHT))
    # the target is one red block; the blind spot is there (orange, 3 channels x its size); no leak is drawn
    inside = (scale - 1) ** 2  # a pixel's block minus its grid lines (drawn at scale >= 6)
    assert colour_count(pixels, viz.TARGET) == inside
    blind = int((~(magnitude > 0) & context).sum())
    assert blind > 0 and colour_count(pixels, viz.BLIND) == blind * inside
    assert colour_count(pixels, viz.LEAK) == 0


# ----- NLL maps ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_nll_map_sums_to_the_log_likelihood(variant):
    shape, k = (3, 4, 4), 4
    if not accepts(variant, shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with {k} levels")
    model = build_variant(variant, shape, k).eval()
    x = torch.randint(k, (3, *shape))
    if getattr(variant, "skip_causality", None) and not hasattr(model, "log_prob_map"):
        # no single step per sub-pixel (e.g. SPN depth upscaling): without a per-pixel map, a clear error
        with pytest.raises(ValueError, match="log_prob_map"):
            explain.nll_map(model, x)
        return
    nll = explain.nll_map(model, x)
    assert nll.shape == (3, 4, 4) and (nll >= 0).all()
    with torch.no_grad():
        expected = -model.log_prob(x) / math.log(2)
    torch.testing.assert_close(nll.sum((1, 2)), expected, rtol=1e-5, atol=1e-4)


def test_nll_map_refuses_a_model_whose_log_prob_is_not_its_heads():
    class Tilted(PixelCNN):  # log_prob adds a constant: the head's per-pixel terms no longer sum to it
        def log_prob(self, x, cond=None):
            return super().log_prob(x, cond) - 1.0

    model = Tilted((1, 4, 4), 4, hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match="log_prob_map"):
        explain.nll_map(model, torch.randint(4, (2, 1, 4, 4)))


def test_nll_map_picture(tmp_path):
    model = tiny_pixelcnn(shape=(1, 6, 6), k=4)
    x = torch.randint(4, (3, 1, 6, 6))
    nll = explain.nll_map(model, x)
    scale, pad = 8, 4
    path = viz.save_nll_map(x, nll, tmp_path / "nll.png", 4, scale=scale, pad=pad)
    width = 2 * 6 * scale + 3 * pad + 150
    height = 3 * 6 * scale + 4 * pad + 12 + viz.TEXT_HEIGHT
    pixels = open_png(path, (width, height))
    # the hottest pixel of all is drawn in the brightest colour of the map, the coolest in a darker one
    top = viz.heat_colors(np.array([1.0]), 1.0)[0]
    assert colour_count(pixels, top) >= scale * scale
    with pytest.raises(ValueError, match="shape"):
        viz.save_nll_map(x, nll[:, :5], tmp_path / "bad.png", 4)
    assert not (tmp_path / "bad.png").exists()


# ----- grids ------------------------------------------------------------------------------------------------
def test_sample_grid_size_and_levels(tmp_path):
    x = torch.randint(5, (10, 1, 4, 6))
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 4
    path = viz.save_grid(x, tmp_path / "g.png", num_levels=5, nrow=4, scale=3, padding=2)
    pixels = open_png(path, (4 * 6 * 3 + 5 * 2, 3 * 4 * 3 + 4 * 2))
    greys = {round(v * 255 / 4) for v in range(5)}
    assert set(np.unique(pixels)) <= greys | {viz.BACKGROUND}
    assert {0, 255} <= set(np.unique(pixels))


def test_grid_round_trips_through_load_image(tmp_path):
    for shape, k in [((1, 5, 7), 17), ((3, 4, 4), 256), ((1, 3, 3), 2)]:
        x = torch.randint(k, (1, *shape))
        path = viz.save_grid(x, tmp_path / "one.png", num_levels=k, nrow=1, scale=1, padding=0)
        assert torch.equal(viz.load_image(path, shape, k), x[0])
    with pytest.raises(ValueError, match="resize"):
        viz.load_image(path, (1, 4, 4), 2)
    assert viz.load_image(path, (1, 4, 4), 2, resize=True).shape == (1, 4, 4)
    with pytest.raises(FileNotFoundError):
        viz.load_image(tmp_path / "missing.png", (1, 3, 3), 2)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        viz.load_image(tmp_path / "junk.png", (1, 3, 3), 2)


def test_completion_grid_keeps_the_given_half(tmp_path):
    model = tiny_pixelcnn(shape=(1, 6, 6), k=4)
    x = torch.randint(4, (2, 1, 6, 6))
    completions, mask = viz.complete(model, x, 3, keep_top=0.5, generator=torch.Generator().manual_seed(0))
    assert completions.shape == (2, 3, 1, 6, 6) and mask[:, :3].all() and not mask[:, 3:].any()
    assert torch.equal(completions[:, :, :, :3], x[:, None, :, :3].expand(2, 3, 1, 3, 6))
    scale, pad = 4, 2
    path = viz.save_completion_grid(x, completions, mask, tmp_path / "c.png", 4, scale=scale, pad=pad)
    open_png(path, (max(5 * 6 * scale + 6 * pad, viz.HEADER_MIN_WIDTH), 2 * 6 * scale + 3 * pad + viz.TEXT_HEIGHT))


class ToyConditional(PixelCNN):
    """A PixelCNN with a per-class bias on its output: a class-conditional model for the class-grid test."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_bias = torch.nn.Embedding(3, self.head.num_params)

    @property
    def num_classes(self) -> int:
        return 3

    def network(self, inputs, cond=None):
        out = super().network(inputs, cond)
        return out if cond is None else out + 5 * self.class_bias(cond)[:, :, None, None]


def test_class_grid_one_row_per_class(tmp_path):
    model = ToyConditional((1, 4, 4), 4, hidden_channels=4, num_layers=1)
    samples = viz.class_samples(model, per_class=5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 5, 1, 4, 4)
    scale, pad = 6, 2
    path = viz.save_class_grid(samples, tmp_path / "cls.png", 4, labels=["a", "b", "c"], scale=scale, pad=pad)
    open_png(path, (28 + 5 * 4 * scale + 6 * pad, 3 * 4 * scale + 4 * pad))
    with pytest.raises(ValueError, match="class-conditional"):
        viz.class_samples(tiny_pixelcnn())


# ----- curves -----------------------------------------------------------------------------------------------
def test_read_curves_understands_the_usual_record_shapes():
    records = [
        {"step": 10, "time": 1.0, "train_bpd": 2.0},
        {"step": 20, "time": 2.0, "train/bpd": 1.5, "lr": 0.001},
        {"step": 20, "elapsed": 2.5, "valid_bpd": 1.7},
        {"step": 30, "split": "val", "bpd": 1.6, "time": 3.0},
        {"step": 30, "train_bpd": float("nan")},
        {"step": 25, "valid_bpd": 1.65},  # no time: interpolated between steps 20 (2.0 s) and 30 (3.0 s)
    ]
    curves = read_curves(records)
    assert curves["train"]["bpd"] == [2.0, 1.5] and curves["train"]["time"] == [1.0, 2.0]
    assert curves["validation"]["step"] == [20.0, 30.0, 25.0]
    assert curves["validation"]["time"] == pytest.approx([2.5, 3.0, 2.5])


def test_curve_plot(tmp_path):
    curves = {
        "train": {"step": [1, 2, 3], "time": [0.5, 1.0, 1.5], "bpd": [3.0, 2.0, 1.5]},
        "validation": {"step": [3], "time": [1.5], "bpd": [1.8]},
    }
    open_png(viz.plot_curves(curves, tmp_path / "curves.png", "t"), (1000, 400))
    with pytest.raises(ValueError, match="png"):
        viz.plot_curves(curves, tmp_path / "curves.jpg")
    with pytest.raises(ValueError, match="no bits/dim"):
        viz.plot_curves({"train": {"step": [], "time": [], "bpd": []}}, tmp_path / "empty.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


# ----- writing never leaves partial files -------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        viz.save_grid(torch.full((1, 1, 2, 2), 7), target, num_levels=4)
    with pytest.raises(ValueError, match="png"):
        viz.save_grid(torch.zeros(1, 1, 2, 2, dtype=torch.long), tmp_path / "grid.jpg", num_levels=4)
    assert target.read_bytes() == b"old" and no_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


# ----- the text half of inspect -----------------------------------------------------------------------------
def test_describe_order_and_parameters():
    model = tiny_pixelcnn(shape=(3, 4, 4))
    assert explain.describe_order(model).startswith("raster") and "R -> G -> B" in explain.describe_order(model)
    rows = explain.parameter_table(model)
    assert sum(n for _, _, n in rows) == sum(p.numel() for p in model.parameters())
    assert rows[0][0] == "input_conv"

    class Subscale(PixelCNN):  # only its order differs: describe_order must name it
        def order(self):
            from pixelmodels.ordering import subscale_order

            return subscale_order(1, 4, 4, 2)

    assert "subscale S=2" in explain.describe_order(Subscale((1, 4, 4), 2, hidden_channels=2, num_layers=0))


# ----- results page -----------------------------------------------------------------------------------------
def test_write_report(tmp_path):
    model = tiny_pixelcnn(shape=(1, 6, 6), k=4)
    info = RunInfo(
        title="tiny run",
        config={"model": {"name": "pixelcnn"}},
        metrics=[{"step": 1, "time": 0.1, "train_bpd": 2.0}, {"step": 2, "time": 0.2, "valid_bpd": 1.9}],
        facts={"step": 2},
        images=torch.randint(4, (4, 1, 6, 6)),
        images_source="test",
    )
    out = write_report(model, info, tmp_path / "report.md", num_samples=4, num_completions=2)
    text = out.read_text()
    pictures = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert sorted(pictures) == sorted(
        f"report_files/{n}.png" for n in ["curves", "samples", "completions", "nll_map", "receptive_field"]
    )
    for picture in pictures:
        with Image.open(tmp_path / picture) as img:
            img.verify()
    assert "bits/dim of the 4 test images shown" in text and '"pixelcnn"' in text
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert no_temp_files(tmp_path) and no_temp_files(tmp_path / "report_files")


# ----- CLI --------------------------------------------------------------------------------------------------
def test_cli_inspect_untrained_model(tmp_path, capsys):
    out = tmp_path / "rf.png"
    args = ["inspect", "--model", "pixelcnn", "--image-shape", "1,8,10", "--levels", "4"]
    args += ["--set", "hidden_channels=6", "--set", "num_layers=2", "--position", "4,4", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "total" in text and "raster" in text and "blind" in text
    scale = viz.auto_scale(8, 10, 160)
    pixels = open_png(out, (max(2 * 10 * scale + 3 * 4, viz.RF_MIN_WIDTH), 8 * scale + 8 + 4 * viz.TEXT_HEIGHT))
    assert colour_count(pixels, viz.BLIND) > 0 and colour_count(pixels, viz.LEAK) == 0


def test_cli_nll_map_untrained_model(tmp_path, capsys):
    image = viz.save_grid(torch.randint(2, (1, 1, 8, 8)), tmp_path / "img.png", 2, nrow=1, scale=1, padding=0)
    out = tmp_path / "map.png"
    args = ["nll-map", "--model", "pixelcnn", "--image-shape", "1,8,8", "--set", "num_layers=1"]
    assert main([*args, "--image", str(image), "--out", str(out)]) == 0
    assert "bits/dim" in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.format == "PNG"


@pytest.mark.parametrize(
    "args,message",
    [
        (["inspect"], "run directory or --model"),
        (["inspect", "--model", "nope", "--out", "{out}"], "unknown model"),
        (["inspect", "--model", "pixelcnn", "--position", "99,0", "--out", "{out}"], "position"),
        (["inspect", "--model", "pixelcnn", "--set", "layers", "--out", "{out}"], "KEY=VALUE"),
        (["nll-map", "--model", "pixelcnn", "--image", "{missing}", "--out", "{out}"], "not found"),
        (["inspect", "runs/none", "--set", "a=1"], "--model only"),
    ],
)
def test_cli_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out.png"
    args = [a.format(out=out, missing=tmp_path / "missing.png") for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_plot_needs_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["plot", str(run)]) == 2
    assert "metrics" in capsys.readouterr().err
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "time": 1.0, "train_bpd": 1.0}) + "\n{torn")
    assert main(["plot", str(run)]) == 0
    open_png(run / "curves.png", (1000, 400))


# ----- commands on a real (tiny) run ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A few training steps of a tiny PixelCNN on digits (shipped with scikit-learn, offline)."""
    from pixelmodels.training import apply_overrides, get_preset

    overrides = ["model.hidden_channels=4", "model.num_layers=1", "train.steps=4", "train.log_every=2"]
    overrides += ["train.eval_every=2", "train.sample_every=0", "train.checkpoint_every=4", "train.num_samples=4"]
    overrides += ["data.max_eval_images=32", "data.max_train_images=256", "data.batch_size=8"]
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return pixelmodels.train(apply_overrides(get_preset("quickstart"), overrides), run, progress=False)


def test_training_writes_curves_with_wall_time(tiny_run):
    pixels = open_png(tiny_run / "curves.png", (1000, 400))
    assert pixels.shape == (400, 1000, 3)
    curves = read_curves([json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()])
    assert curves["train"]["step"] == [2.0, 4.0] and curves["validation"]["step"] == [2.0, 4.0]
    for split in ("train", "validation"):
        times = curves[split]["time"]
        assert len(times) == 2 and 0 < times[0] < times[1]


def test_cli_plot_inspect_nll_map_report_on_a_run(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "c.png")]) == 0
    open_png(tmp_path / "c.png", (1000, 400))

    assert main(["inspect", str(tiny_run), "--position", "3,3", "--out", str(tmp_path / "rf.png")]) == 0
    assert "raster" in capsys.readouterr().out
    scale = viz.auto_scale(8, 8, 160)
    open_png(tmp_path / "rf.png", (max(2 * 8 * scale + 3 * 4, viz.RF_MIN_WIDTH), 8 * scale + 8 + 4 * viz.TEXT_HEIGHT))

    model = pixelmodels.load_checkpoint(tiny_run)
    from pixelmodels.data import load_dataset

    digit = load_dataset("digits", "test").images[:1].long()
    image = viz.save_grid(digit, tmp_path / "digit.png", 17, nrow=1, scale=1, padding=0)
    assert main(["nll-map", str(tiny_run), "--image", str(image), "--out", str(tmp_path / "m.png")]) == 0
    printed = float(capsys.readouterr().out.split(": ")[1].split()[0])
    expected = -model.log_prob(digit).item() / (64 * math.log(2))
    assert abs(printed - expected) < 1e-3

    assert main(["nll-map", str(tiny_run), "--split", "test", "-n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert "digits test #0" in capsys.readouterr().out  # the first and the last image of the split
    open_png(tmp_path / "s.png", (2 * 8 * 12 + 3 * 4 + 150, 2 * 8 * 12 + 3 * 4 + 12 + viz.TEXT_HEIGHT))

    assert main(["report", str(tiny_run)]) == 0
    text = (tiny_run / "report.md").read_text()
    for needle in ["test bits/dim", "report_files/curves.png", "report_files/completions.png", "digits test"]:
        assert needle in text
    assert (tiny_run / "report.html").read_text().count("data:image/png;base64,") == 5


def test_cli_run_commands_fail_cleanly_on_bad_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == []


def test_write_report_for_a_class_conditional_model(tmp_path):
    model = ToyConditional((1, 4, 4), 4, hidden_channels=4, num_layers=1)
    info = RunInfo(title="toy", images=torch.randint(4, (2, 1, 4, 4)), labels=torch.tensor([0, 2]), images_source="x")
    info.class_names = ["zero", "one", "two"]
    text = write_report(model, info, tmp_path / "r.md", num_samples=4, num_completions=1).read_text()
    assert "r_files/classes.png" in text and "samples.png" not in text
    with Image.open(tmp_path / "r_files" / "classes.png") as img:
        assert img.size == (28 + 2 * 4 * viz.auto_scale(4, 4, 64) + 3 * 2, 3 * 4 * viz.auto_scale(4, 4, 64) + 4 * 2)
