"""Multi-Scale PixelRNN (PixelRNN paper, section 3.6; models/multiscale.py): the conditional stage is causal in the
pixels it generates and reads the whole small image, its cached sampler matches its full network at every step,
and the preset trains from the CLI. (Normalization, sampler agreement, completion, seeds, config round trip and
bad inputs run in the contract suite through tests/model_variants.py.)"""

import json

import pytest
import torch

import pixelmodels
from pixelmodels.ordering import rank_map

FAMILIES = ["row_lstm", "diagonal_bilstm"]


def multiscale(family, shape=(3, 4, 4), k=4, **rest):
    torch.manual_seed(0)
    hp = dict(hidden_channels=6, num_layers=2, first_kernel_size=3)
    model = pixelmodels.build(
        "staged", image_shape=shape, num_levels=k, split="size", factor=2,
        first=dict(hp, name=family), rest=dict(hp, name="pixelrnn", model=family, **rest),
    ).eval()  # fmt: skip
    with torch.no_grad():  # learned initial states start at zero: give them values the sampler must use
        for key, param in model.named_parameters():
            if key.endswith("init.state"):
                param.normal_()
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_the_conditional_stage_sees_earlier_pixels_and_the_small_image(family):
    """Gradients: a generated sub-pixel depends only on sub-pixels before it in raster order and on the small
    image x[:, :, ::2, ::2]; the gate biases read the small image only, and at every position they read its
    neighbourhood, later small-image pixels included."""
    model = multiscale(family, (3, 4, 4), 4)
    rest = model.rest_model
    c, h, w = model.image_shape
    rank = rank_map(rest.net.order(), c, h, w)
    small = rest.given_mask
    inputs = rest.net.scale_input(torch.randint(4, (2, c, h, w))).requires_grad_(True)
    biases = rest.gate_biases(inputs)  # per layer (2, gates, H, W)
    params = rest.net.conditioned_network(inputs, biases)  # (2, P, H, W)
    for ci, hi, wi in [(0, 0, 1), (1, 1, 0), (2, 1, 3), (0, 3, 3), (1, 2, 1)]:
        idx = rest.head.param_indices(ci)
        (grad,) = torch.autograd.grad(params[:, idx, hi, wi].sum(), inputs, retain_graph=True)
        depends = grad.abs().sum(0) > 0  # (C, H, W)
        allowed = (rank < rank[ci, hi, wi]) | small
        assert not (depends & ~allowed).any(), f"{(ci, hi, wi)} reads {(depends & ~allowed).nonzero().tolist()}"
    for hi, wi in [(0, 1), (1, 0), (1, 3), (3, 3)]:
        (grad,) = torch.autograd.grad(biases[0][:, :, hi, wi].sum(), inputs, retain_graph=True)
        depends = grad.abs().sum(0) > 0
        assert depends.any() and not (depends & ~small).any()
        assert depends[:, 2, 2].all()  # small pixel (1, 1) is within every position's 3x3 reach here


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_conditional_stage_matches_its_full_network(family):
    """Every step of the rest stage's cached sampler equals the full conditioned network on the final image
    (trace over the full raster order; the small image's steps keep their values)."""
    model = multiscale(family, (3, 4, 4), 4)
    rest = model.rest_model
    first = model.first_model.sample(2, generator=torch.Generator().manual_seed(0))
    canvas = model._rest_canvas(first, None, 2)
    trace: list = []
    x = rest.sample_given(canvas, None, generator=torch.Generator().manual_seed(1), trace=trace)
    assert torch.equal(x[:, :, ::2, ::2], first)
    with torch.no_grad():
        full = rest.params(x)  # (2, P, H, W)
    order = rest.net.order()
    assert [i for i, _ in trace] == list(range(len(order)))
    for (_, params), (h, w, channels) in zip(trace, order, strict=True):
        idx = [j for c in channels for j in rest.head.param_indices(c)]
        torch.testing.assert_close(params[:, idx], full[:, idx, h, w], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_naive_and_cached_multiscale_samplers_draw_the_same_images(family):
    model = multiscale(family, (1, 4, 4), 3)
    known = torch.randint(3, (3, 1, 4, 4))
    mask = torch.rand(3, 1, 4, 4) < 0.3
    draws = [
        model.sample(3, known=known, known_mask=mask, method=m, generator=torch.Generator().manual_seed(4))
        for m in ("naive", "fast")
    ]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0][mask], known[mask])


def test_log_prob_is_the_two_stage_terms():
    model = multiscale("row_lstm", (1, 4, 4), 2)
    x = torch.randint(2, (3, 1, 4, 4))
    with torch.no_grad():
        first = model.first_model.log_prob(x[:, :, ::2, ::2])
        rest = model.rest_model.log_prob_given(x)
        torch.testing.assert_close(model.log_prob(x), first + rest)
        changed = x.clone()
        changed[:, :, 0, 0] = 1 - changed[:, :, 0, 0]  # a small-image pixel: the rest stage's condition changes
        assert not torch.allclose(model.rest_model.log_prob_given(changed), rest)


def test_bad_multiscale_configs_raise():
    with pytest.raises(ValueError, match="split='size'"):
        pixelmodels.build("staged", image_shape=(1, 4, 4), num_levels=4, split="depth", factor=1,
                          first=dict(name="row_lstm"), rest=dict(name="pixelrnn"))  # fmt: skip
    with pytest.raises(ValueError, match="model must be one of"):
        pixelmodels.build("staged", image_shape=(1, 4, 4), num_levels=4, split="size", factor=2,
                          first=dict(name="row_lstm"), rest=dict(name="pixelrnn", model="pixelcnn"))  # fmt: skip


def test_the_preset_trains_from_the_cli(tmp_path, capsys):
    from pixelmodels.cli import main

    out = tmp_path / "run"
    args = ["train", "--preset", "multiscale_pixelrnn-digits", "--out", str(out)]
    for kv in ["train.steps=3", "train.eval_every=3", "train.sample_every=0", "train.num_samples=2",
               "data.max_train_images=64", "data.max_eval_images=16", "data.max_test_images=16"]:  # fmt: skip
        args += ["--set", kv]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["bits_per_dim"] > 0
    model = pixelmodels.load_checkpoint(out)
    assert model.rest_model.net.model_name == "row_lstm" and model.sample(2).shape == (2, 1, 8, 8)


def test_the_codec_round_trips_a_multiscale_model():
    """The codec codes the small image with the first stage, then the rest through the conditional stage's
    cached sampler, drawing only at the generated steps."""
    from pixelmodels import codec

    model = multiscale("diagonal_bilstm", (3, 4, 4), 5)
    x = torch.randint(5, (2, 3, 4, 4))
    assert torch.equal(codec.decompress(model, codec.compress(model, x)), x)
