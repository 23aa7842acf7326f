"""Subscale Pixel Networks and multidimensional upscaling: slicing, gradient reach, the stage models, cached
decoding, slice training and the codec.

The generic contract suite (tests/test_contract.py) runs on the ``spn`` and ``staged`` variants of
tests/model_variants.py; these tests cover what it cannot: reach at 64x64 and 128x128, the causality of the
conditional stages, the key/value-cached decoder, and the training path.
"""

from __future__ import annotations

import math

import pytest
import torch

import pixelmodels
from contract import all_images
from pixelmodels import codec
from pixelmodels.nn.attention import SelfAttention
from pixelmodels.nn.subscale import earlier_slices, from_slices, to_slices
from pixelmodels.ordering import rank_map, subscale_order

TINY = dict(hidden_channels=9, num_layers=1, num_heads=3, context_channels=6, context_layers=1,
            context_attention_layers=1)  # fmt: skip


def spn(shape, k, **hparams):
    return pixelmodels.build("spn", image_shape=shape, num_levels=k, **{**TINY, **hparams})


def staged(shape, k, split, factor, first=None, **rest):
    first = first or dict(TINY, name="spn", scale=1)
    return pixelmodels.build(
        "staged", image_shape=shape, num_levels=k, split=split, factor=factor, first=first,
        rest=dict(TINY, name="spn", **rest),
    )  # fmt: skip


# ----- slicing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,shape", [(1, (2, 3, 5)), (2, (3, 4, 6)), (3, (1, 6, 9)), (4, (2, 8, 8))])
def test_slices_are_an_exact_inverse_and_follow_the_subscale_layout(scale, shape):
    x = torch.randint(256, (2, *shape))
    slices = to_slices(x, scale)
    assert slices.shape == (2, scale * scale, shape[0], shape[1] // scale, shape[2] // scale)
    assert torch.equal(from_slices(slices, scale), x)
    for a in range(scale):
        for b in range(scale):
            assert torch.equal(slices[:, a * scale + b], x[:, :, a::scale, b::scale])


def test_slicing_rejects_sizes_not_divisible_by_the_scale():
    with pytest.raises(ValueError, match="divisible"):
        to_slices(torch.zeros(1, 1, 4, 5), 2)
    with pytest.raises(ValueError, match="divisible"):
        spn((1, 6, 6), 2, scale=4)


def test_earlier_slices_zero_the_target_and_later_slices():
    slices = torch.randn(2, 4, 3, 2, 2)
    targets = torch.tensor([[0, 2], [3, 1]])
    ctx = earlier_slices(slices, targets).view(2, 2, 4, 3, 2, 2)
    for b in range(2):
        for j in range(2):
            t = int(targets[b, j])
            assert torch.equal(ctx[b, j, :t], slices[b, :t])
            assert not ctx[b, j, t:].any()


# ----- gradient reach: every conditional sees every earlier position --------------------------------------------
def _reach(core, head, shape, scale, points, given_channels=0):
    """For each (c, h, w) in ``points``: the inputs (and given image) its parameters depend on, vs those before it."""
    c, height, width = shape
    rank = rank_map(subscale_order(c, height, width, scale), c, height, width)
    inputs = (torch.rand(1, *shape) * 2 - 1).requires_grad_(True)
    given = (torch.rand(1, given_channels, height, width) * 2 - 1).requires_grad_(True) if given_channels else None
    out = []
    for ci, hi, wi in points:
        t = (hi % scale) * scale + wi % scale
        params = core(inputs, given, torch.tensor([[t]]))[0, 0]  # (P, h, w)
        wrt = [inputs] + ([given] if given is not None else [])
        grads = torch.autograd.grad(params[head.param_indices(ci), hi // scale, wi // scale].sum(), wrt)
        out.append((rank < rank[ci, hi, wi], grads[0][0].abs() > 0, None if given is None else grads[1][0].abs() > 0))
    return out


def _points(shape, scale):
    """The hardest conditionals: the first and last sub-pixel of every slice (first colour and last), and the middle."""
    c, h, w = shape
    pts = []
    for a in range(scale):
        for b in range(scale):
            pts += [(0, a, b), (c - 1, h - scale + a, w - scale + b)]
    return pts + [(c // 2, h // 2 + 1, w // 2 + 3)]


@pytest.mark.parametrize("size", [64, 128])
def test_every_conditional_sees_every_earlier_sub_pixel(size):
    """At S=4: every earlier slice whole and every earlier sub-pixel of its own slice, nothing after."""
    torch.manual_seed(0)
    shape = (3, size, size)
    model = spn(shape, 4, scale=4)
    for allowed, depends, _ in _reach(model.core, model.head, shape, 4, _points(shape, 4)):
        assert torch.equal(depends, allowed)


def test_the_lsb_stage_sees_every_msb_and_every_earlier_lsb():
    torch.manual_seed(0)
    shape = (3, 64, 64)
    model = staged(shape, 8, "depth", 1, scale=4)
    rest = model.rest_model
    for allowed, depends, on_given in _reach(rest.core, rest.head, shape, 4, _points(shape, 4), given_channels=3):
        assert torch.equal(depends, allowed) and on_given.all()


def test_the_size_rest_stage_sees_the_first_slice_and_every_earlier_sub_pixel():
    torch.manual_seed(0)
    shape = (1, 8, 8)
    model = staged(shape, 4, "size", 2)
    rest = model.rest_model
    points = [(0, 0, 1), (0, 1, 0), (0, 7, 7), (0, 4, 5)]  # slice 0 is given: no conditional there
    for allowed, depends, _ in _reach(rest.core, rest.head, shape, 2, points):
        assert torch.equal(depends, allowed)


def test_causal_attention_is_strictly_earlier_and_grouped():
    """Query group g at position p reads groups <= g at p (through the masked query) and all of positions < p."""
    torch.manual_seed(0)
    att = SelfAttention(6, 3, groups=3, causal=True)
    x = torch.randn(2, 5, 6, requires_grad=True)
    y = att(x)
    for p in range(5):
        for g in range(3):
            (grad,) = torch.autograd.grad(y[:, p, 2 * g : 2 * g + 2].sum(), x, retain_graph=True)
            seen = grad.abs().sum(0) > 0  # (N, D)
            assert not seen[p + 1 :].any() and seen[:p].all()
            assert not seen[p, 2 * g + 2 :].any()  # later colour groups of p stay unseen (p's keys are not used)


# ----- the stages -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split,factor,k", [("size", 2, 4), ("depth", 1, 4), ("depth", 2, 8)])
def test_stage_terms_are_a_first_model_and_a_conditional_rest(split, factor, k):
    torch.manual_seed(0)
    model = staged((3, 4, 4), k, split, factor).eval()
    x = torch.randint(k, (3, 3, 4, 4))
    first, rest, given = model.views(x)
    assert torch.equal(model.merge(first, model._rest_canvas(first, rest, 3)), x)
    terms = model.stage_log_probs(x)
    torch.testing.assert_close(terms["first"], model.first_model.log_prob(first))
    torch.testing.assert_close(model.log_prob(x), terms["first"] + terms["rest"])
    # the rest term is a distribution over the rest, given the first view: the conditional SPN never reads a
    # value it models before generating it (gradient check on its teacher-forced parameters)
    core = model.rest_model.core
    c, h, w = model.image_shape
    rank = rank_map(subscale_order(c, h, w, core.scale), c, h, w)
    inputs = (torch.rand(2, c, h, w) * 2 - 1).requires_grad_(True)
    given_in = None if given is None else torch.rand(2, c, h, w).requires_grad_(True)
    params = from_slices(torch.cat([torch.zeros_like(core(inputs, given_in)[:, :1]), core(inputs, given_in)], 1)
                         if split == "size" else core(inputs, given_in), core.scale)  # fmt: skip
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                if split == "size" and hi % 2 == 0 and wi % 2 == 0:
                    continue
                idx = model.rest_model.head.param_indices(ci)
                (grad,) = torch.autograd.grad(params[:, idx, hi, wi].sum(), inputs, retain_graph=True)
                assert torch.equal(grad.abs().sum(0) > 0, rank < rank[ci, hi, wi])


def test_stage_normalizes_stage_by_stage_on_rgb():
    """(3, 2, 2) with K=4: sum p(msb) = 1 over all 2^12 MSB images, sum p(lsb | msb) = 1 for a few MSB images."""
    shape = (3, 2, 2)
    model = staged(shape, 4, "depth", 1, scale=2).eval()
    bits = all_images(shape, 2)  # (4096, 3, 2, 2)
    with torch.no_grad():
        assert abs(model.stage_log_probs(bits * 2)["first"].double().logsumexp(0).exp().item() - 1) < 1e-4
        for i in torch.randint(len(bits), (3,)).tolist():
            lp = model.stage_log_probs(bits[i] * 2 + bits)["rest"]
            assert abs(lp.double().logsumexp(0).exp().item() - 1) < 1e-4


def test_bad_splits_are_rejected():
    with pytest.raises(ValueError, match="num_levels = 2"):
        staged((1, 4, 4), 6, "depth", 1)
    with pytest.raises(ValueError, match="num_levels = 2"):
        staged((1, 4, 4), 8, "depth", 3)
    with pytest.raises(ValueError, match="factor"):
        staged((1, 6, 6), 4, "size", 4)
    with pytest.raises(ValueError, match="must equal factor"):
        staged((1, 4, 4), 4, "size", 2, scale=4)
    with pytest.raises(ValueError, match="train_stage"):
        pixelmodels.build("staged", image_shape=(1, 4, 4), num_levels=4, train_stage="msb")


@pytest.mark.parametrize("stage", ["first", "rest"])
def test_a_stage_trains_on_its_own_term(stage):
    torch.manual_seed(0)
    model = staged((1, 4, 4), 4, "depth", 1, scale=2)
    model.train_stage = stage
    x = torch.randint(4, (3, 1, 4, 4))
    model.training_loss(x, generator=torch.Generator().manual_seed(0)).backward()
    trained, frozen = (
        (model.first_model, model.rest_model) if stage == "first" else (model.rest_model, model.first_model)
    )
    assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None and p.grad.any() for p in trained.parameters())


# ----- cached decoding: exact at every step, same images as naive ---------------------------------------------
@pytest.mark.parametrize("head", ["categorical", "dmol"])
def test_cached_decoder_matches_the_full_network_at_every_step(head):
    model = spn((3, 4, 4), 4, head=head).eval()
    trace = []
    x = model.fast_sample(3, None, None, None, generator=torch.Generator().manual_seed(1), trace=trace)
    steps = model.order()
    assert [i for i, _ in trace] == list(range(len(steps)))
    with torch.no_grad():
        full = model.network(model.scale_input(x))  # (B, P, H, W)
    for i, params in trace:
        h, w, channels = steps[i]
        idx = [j for c in channels for j in model.head.param_indices(c)]  # later channels' change once drawn
        torch.testing.assert_close(params[:, idx], full[:, idx, h, w], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("split,factor", [("size", 2), ("depth", 1)])
def test_cached_rest_stage_matches_its_full_network(split, factor):
    torch.manual_seed(0)
    model = staged((3, 4, 4), 4, split, factor, scale=2).eval()
    trace = []
    rest = model.rest_model
    first = model.first_model.sample(2, generator=torch.Generator().manual_seed(0))
    given = first if split == "depth" else None
    x = rest.sample_given(model._rest_canvas(first, None, 2), given, generator=torch.Generator().manual_seed(1),
                          trace=trace)  # fmt: skip
    with torch.no_grad():
        scaled_given = None if given is None else given.float() * 2 - 1  # 2 MSB levels
        full = rest.core(x.float() * (2 / (rest.num_levels - 1)) - 1, scaled_given)  # (B, n, P, h, w)
    steps = rest.order()
    for i, params in trace:
        h, w, channels = steps[i]
        t = (h % 2) * 2 + w % 2 - rest.core.first_slice
        idx = [j for c in channels for j in rest.head.param_indices(c)]
        torch.testing.assert_close(params[:, idx], full[:, t, idx, h // 2, w // 2], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["spn", "size", "depth"])
def test_naive_and_cached_samplers_draw_the_same_images(which):
    torch.manual_seed(0)
    model = spn((3, 4, 4), 4) if which == "spn" else staged((3, 4, 4), 4, which, {"size": 2, "depth": 1}[which])
    known = torch.randint(4, (4, 3, 4, 4))
    mask = torch.rand(4, 3, 4, 4) < 0.3
    draws = [
        model.sample(4, known=known, known_mask=mask, method=m, generator=torch.Generator().manual_seed(5))
        for m in ("naive", "fast")
    ]
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0][mask], known[mask])


# ----- training on slices ----------------------------------------------------------------------------------------
def test_slice_log_probs_sum_to_the_exact_log_prob():
    model = spn((3, 4, 4), 4)
    x = torch.randint(4, (3, 3, 4, 4))
    core, inputs = model.core, model.scale_input(x)
    per_slice = torch.stack(
        [core.log_prob_slices(model.head, x, inputs, targets=torch.full((3, 1), t))[:, 0] for t in range(4)]
    )  # (T, B): each is log p(slice t | earlier slices)
    torch.testing.assert_close(per_slice.sum(0), model.log_prob(x), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(model.estimate_log_prob(x, num_slices=4), model.log_prob(x))
    estimate = model.estimate_log_prob(x, num_slices=1, generator=torch.Generator().manual_seed(0))
    assert all(torch.isclose(4 * per_slice[:, b], estimate[b], atol=1e-4).any() for b in range(3))


def test_training_loss_runs_the_decoder_on_one_slice_per_image():
    model = spn((1, 8, 8), 4, scale=4, train_slices=1)
    rows = []
    model.core.decoder.register_forward_hook(lambda mod, inp, out: rows.append(tuple(inp[0].shape)))
    x = torch.randint(4, (5, 1, 8, 8))
    loss = model.training_loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert rows == [(5, 1, 2, 2)]  # 5 images x 1 slice of 2x2, not 5 x 16 slices
    assert loss.dim() == 0 and loss.item() > 0
    assert all(p.grad is not None for p in model.core.decoder.parameters())


# ----- the codec: every option codes with the model's own distribution -----------------------------------------
@pytest.mark.parametrize(
    "which,k", [("spn", 16), ("depth", 4), ("depth", 8), ("depth", 256), ("size", 8), ("size+depth", 16)]
)
def test_codec_round_trip_costs_the_model_bits(which, k):
    """Old code: depth-upscaled files at K=4 were coded with a distribution that is not the model's; K >= 8
    raised; SPN was coded by rerunning the whole network per step. Now: exact round trip, payload ~ -log2 p."""
    torch.manual_seed(0)
    shape = (3, 4, 4)
    if which == "spn":
        model = spn(shape, k)
    elif which == "size+depth":
        inner = dict(name="staged", split="size", factor=2, first=dict(TINY, name="spn", scale=1),
                     rest=dict(TINY, name="spn"))  # fmt: skip
        model = staged(shape, k, "depth", 2, first=inner, scale=2)
    else:
        model = staged(shape, k, which, {"size": 2, "depth": 1 if k == 4 else 2}[which], scale=2)
    x = torch.randint(k, (3, *shape), generator=torch.Generator().manual_seed(3))
    data = codec.compress(model, x, batch_size=2)
    assert codec.read_header(data).method == codec.FAST
    assert torch.equal(codec.decompress(model, data), x)
    with torch.no_grad():
        model_bits = -model.eval().log_prob(x).sum().item() / math.log(2)
    payload_bits = 32 * codec.read_header(data).payload_words
    assert 0.99 * model_bits - 1 < payload_bits < 1.01 * model_bits + 64, (payload_bits, model_bits)


# ----- the CLI: train stage by stage, then compose -------------------------------------------------------------
def test_cli_trains_stages_and_composes_them(tmp_path, capsys):
    import json

    from pixelmodels.cli import main
    from pixelmodels.training import load_checkpoint

    tiny = ["--preset", "spn-staged-digits", "--set", "data.batch_size=8", "--set", "data.max_train_images=32",
            "--set", "data.max_eval_images=8", "--set", "data.max_test_images=8", "--set", "optim.warmup_steps=0",
            "--set", "train.steps=2", "--set", "train.eval_every=2", "--set", "train.sample_every=2",
            "--set", "train.checkpoint_every=2", "--set", "train.num_samples=2"]  # fmt: skip
    runs = {stage: tmp_path / stage for stage in ("first", "rest")}
    for stage, out in runs.items():
        assert main(["train", *tiny, "--stage", stage, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compose", str(runs["first"]), str(runs["rest"]), "--out", str(tmp_path / "both")]) == 0
    report = json.loads(capsys.readouterr().out)
    bits = report["bits_per_dim"]
    assert set(bits) == {"first", "rest", "total"} and abs(bits["first"] + bits["rest"] - bits["total"]) < 1e-9
    composed = load_checkpoint(tmp_path / "both")
    trained = {stage: load_checkpoint(out) for stage, out in runs.items()}
    assert composed.train_stage == "all"
    for name, tensor in composed.state_dict().items():
        source = trained["first" if name.startswith("first_model.") else "rest"]
        assert torch.equal(tensor, source.state_dict()[name]), name
    # a second compose into the same folder is refused (nothing overwritten), and mismatched runs are refused
    assert main(["compose", str(runs["first"]), str(runs["rest"]), "--out", str(tmp_path / "both")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["compose", str(runs["first"]), str(runs["rest"]), "--out", str(tmp_path / "both"), "--overwrite",
                 "--split", "none"]) == 0  # fmt: skip
    assert load_checkpoint(tmp_path / "both").train_stage == "all"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep")
    other = ["compose", str(runs["first"]), str(runs["rest"]), "--out", str(tmp_path / "other"), "--overwrite"]
    assert main(other) == 2
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep"  # not a run: never replaced
    assert main(["compose", str(runs["rest"]), str(runs["first"]), "--out", str(tmp_path / "swap")]) == 2
    assert "trained stage" in capsys.readouterr().err


def test_recomputed_blocks_give_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = spn((3, 8, 8), 4, scale=2, train_slices=0)
    again = spn((3, 8, 8), 4, scale=2, train_slices=0, recompute=True)
    again.load_state_dict(plain.state_dict())
    x = torch.randint(4, (2, 3, 8, 8))
    losses = [m.training_loss(x) for m in (plain, again)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), b in zip(plain.named_parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
