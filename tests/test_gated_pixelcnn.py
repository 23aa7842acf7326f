"""Gated PixelCNN specifics: no blind spot, conditioning (labels, spatial map), and the contract checks rerun
with a condition bound (the shared suite calls the model without ``cond``)."""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from contract import all_images, correlated_data, dependency_violations, empirical_tv, fit
from pixelmodels.nn.gated import GatedStack, shift_down


def gated(shape=(1, 4, 4), k=4, **kw):
    hp = dict(hidden_channels=12, num_layers=2, kernel_size=3) | kw
    return pixelmodels.build("gated_pixelcnn", image_shape=shape, num_levels=k, **hp)


def receptive_field(model, i: int, j: int) -> torch.Tensor:
    """(H, W) bool: the pixels the parameters at (i, j) depend on (gradients over a random batch)."""
    x = (torch.rand(4, *model.image_shape) * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.network(x)[:, :, i, j].sum(), x)
    return grad.abs().sum(dim=(0, 1)) > 0


def test_no_blind_spot():
    """With L layers of size n (k = n // 2), pixel (i, j) sees every pixel in rows i-Lk-1..i-1, columns
    j-Lk..j+Lk, and row i, columns j-Lk..j-1: exactly that, up-right corner included. A PixelCNN of the same depth and
    kernel misses the pixels up-right of it (its blind spot, paper Figure 1)."""
    i, j, layers = 5, 4, 3
    model = gated((1, 8, 8), 2, num_layers=layers, kernel_size=3)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[i - layers - 1 : i, j - layers : j + layers + 1] = True
    expected[i, j - layers : j] = True
    assert torch.equal(receptive_field(model, i, j), expected)

    pixelcnn = pixelmodels.build(
        "pixelcnn", image_shape=(1, 8, 8), num_levels=2, hidden_channels=4, num_layers=layers - 1, first_kernel_size=3
    )
    seen = receptive_field(pixelcnn, i, j)
    assert seen[i - 1, j + 1] and not seen[i - 1, j + 2] and not seen[i - 1, j + 3]
    assert expected[i - 1, j + 3]


def test_first_layer_mask_a_and_channel_groups():
    """Red parameters never read the current pixel; green reads its red; blue reads red and green."""
    model = gated((3, 3, 3), 4)
    x = (torch.rand(2, 3, 3, 3) * 2 - 1).requires_grad_(True)
    params = model.network(x)
    for c in range(3):
        (grad,) = torch.autograd.grad(params[:, model.head.param_indices(c), 1, 1].sum(), x, retain_graph=True)
        seen = grad.abs().sum(0)[:, 1, 1] > 0  # (C,) channels of the current pixel
        assert seen.tolist() == [ch < c for ch in range(3)]


def bind(model, cond):
    """Make ``network`` ignore its ``cond`` argument and use ``cond`` (labels (1,) / map (1, ...) broadcast)."""
    original = model.network

    def network(inputs, _=None):
        n = inputs.shape[0]
        labels, cond_map = model.split_cond(cond)
        bound = {}
        if labels is not None:
            bound["labels"] = labels.expand(n)
        if cond_map is not None:
            bound["map"] = cond_map.expand(n, *cond_map.shape[1:])
        return original(inputs, bound)

    model.network = network
    return model


def conditional(shape, k, **kw):
    model = gated(shape, k, num_classes=3, cond_channels=2, **kw)
    cond = {"labels": torch.tensor([2]), "map": torch.randn(1, 2, *shape[1:])}
    model.bound_cond = cond
    return bind(model, cond)


@pytest.mark.parametrize("shape,k", [((1, 4, 4), 2), ((3, 3, 3), 4)], ids=["gray", "rgb"])
def test_conditional_causality(shape, k):
    leaks, isolated = dependency_violations(conditional(shape, k))
    assert leaks == [] and isolated == []


@pytest.mark.parametrize("shape,k", [((1, 2, 3), 2), ((3, 1, 1), 4), ((3, 2, 2), 2)], ids=str)
def test_conditional_normalization(shape, k):
    model = conditional(shape, k).eval()
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(all_images(shape, k)).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4


def test_conditional_sampler_agrees_with_log_prob():
    shape, k = (3, 1, 1), 4
    model = fit(conditional(shape, k), correlated_data(shape, k, 4096), steps=60)
    # the fast sampler does not go through `network`: give it the same condition explicitly
    cond = {"labels": model.bound_cond["labels"][0], "map": model.bound_cond["map"][0]}
    samples = model.sample(20000, cond=cond, method="fast", generator=torch.Generator().manual_seed(0))
    assert empirical_tv(model, samples) < 0.03


def test_labels_and_map_change_the_distribution():
    model = gated((1, 4, 4), 4, num_classes=3, cond_channels=2).eval()
    x = torch.randint(4, (3, 1, 4, 4))
    by_label = torch.stack([model.log_prob(x, c) for c in range(3)])
    assert (by_label[0] - by_label[1]).abs().min() > 0
    cond_map = torch.randn(2, 4, 4)
    assert not torch.allclose(model.log_prob(x, cond_map), model.log_prob(x))
    both = model.log_prob(x, {"labels": torch.tensor([0, 1, 2]), "map": cond_map})
    assert both.shape == (3,)


def test_cond_none_is_the_no_label_embedding():
    model = gated((1, 4, 4), 4, num_classes=3).eval()
    x = torch.randint(4, (2, 1, 4, 4))
    inputs = model.scale_input(x)
    no_label = model.output(model.stack(inputs, torch.full((2,), 3)))
    torch.testing.assert_close(model(x), no_label)
    assert not torch.allclose(model(x, 0), no_label)


def test_label_dropout_replaces_labels_in_training_only():
    model = gated((1, 4, 4), 4, num_classes=3, label_dropout=0.999)
    x = torch.randint(4, (8, 1, 4, 4))
    torch.testing.assert_close(model(x, 1), model(x))  # training: every label dropped
    model.eval()
    assert not torch.allclose(model(x, 1), model(x))


def test_bad_conditioning_raises_clear_errors():
    x = torch.randint(4, (2, 1, 4, 4))
    with pytest.raises(ValueError, match="unconditional"):
        gated().log_prob(x, torch.tensor([0, 1]))
    labels_only = gated(num_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        labels_only.log_prob(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="no spatial map"):
        labels_only.log_prob(x, torch.zeros(2, 2, 4, 4))
    map_only = gated(cond_channels=2)
    with pytest.raises(ValueError, match=r"shape \(2, 2, 4, 4\)"):
        map_only.log_prob(x, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="no class labels"):
        map_only.log_prob(x, 1)
    with pytest.raises(ValueError, match="keys"):
        map_only.log_prob(x, {"label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="num_classes"):
        gated(num_classes=0)


def test_conditional_config_round_trip():
    model = gated((3, 4, 4), 4, num_classes=3, cond_channels=2, label_dropout=0.1).eval()
    assert model.config["num_classes"] == 3 and model.config["cond_channels"] == 2
    clone = pixelmodels.build(**model.config).eval()
    clone.load_state_dict(model.state_dict())
    x = torch.randint(4, (2, 3, 4, 4))
    cond = {"labels": torch.tensor([0, 2]), "map": torch.randn(2, 2, 4, 4)}
    torch.testing.assert_close(clone.log_prob(x, cond), model.log_prob(x, cond))


def test_class_conditional_sampling_from_one_int():
    model = gated((1, 3, 3), 4, num_classes=3)
    out = model.sample(4, cond=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 3, 3)


def test_stack_is_reusable_as_a_conditioned_decoder():
    """GatedStack alone, conditioned on a map of its input's size (e.g. an SPN context), stays causal."""
    stack = GatedStack(3, 6, 2, 3, num_groups=3, cond_channels=4)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = stack(x, cond_map=torch.randn(2, 4, 4, 4))  # (2, 6, 4, 4)
    (grad,) = torch.autograd.grad(out[:, :, 2, 1].sum(), x)
    seen = grad.abs().sum((0, 1)) > 0
    assert not seen[2, 2:].any() and not seen[3:].any() and seen[1, 2]


def test_conditions_on_digit_labels():
    """A model trained a few hundred steps on the 8x8 digits with their labels gives the right label a higher
    log-likelihood than the wrong ones for most held-out images (chance: 10% top-1)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.long).view(-1, 1, 8, 8)  # values in [0, 16]
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    train, test = perm[:1500], perm[1500:]
    model = pixelmodels.build(
        "gated_pixelcnn",
        image_shape=(1, 8, 8),
        num_levels=17,
        hidden_channels=8,
        num_layers=2,
        kernel_size=3,
        num_classes=10,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        idx = train[torch.randint(len(train), (32,), generator=g)]
        loss = -model.log_prob(x[idx], y[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logp = torch.stack([model.log_prob(x[test], torch.full((len(test),), c)) for c in range(10)], dim=1)
    right = logp.gather(1, y[test, None])  # (N, 1)
    top1 = (logp.argmax(1) == y[test]).float().mean().item()
    beats_wrong = ((right > logp).sum(1).float() / 9).mean().item()  # share of wrong labels ranked below
    assert top1 > 0.5, f"right label most likely for only {top1:.0%} of test images"
    assert beats_wrong > 0.85, f"right label beats only {beats_wrong:.0%} of wrong labels"


def upsampled(shape, k):
    """A model fed a map half the image's size through the deconvolution network, the map bound."""
    model = gated(shape, k, cond_channels=2, cond_upsample=1)
    cond_map = torch.randn(1, 2, shape[1] // 2, shape[2] // 2)
    model.bound_cond = cond_map
    return bind(model, cond_map)


@pytest.mark.parametrize("shape,k", [((1, 4, 4), 2), ((3, 2, 4), 4)], ids=["gray", "rgb"])
def test_deconvolution_keeps_causality_and_normalization(shape, k):
    """Section 2.3's m(s) reads only the map: causality w.r.t. the image and normalization hold."""
    model = upsampled(shape, k)
    leaks, isolated = dependency_violations(model)
    assert leaks == [] and isolated == []
    small = upsampled((shape[0], 2, 2), 2).eval()  # at most 2^12 images
    with torch.no_grad():
        total = torch.logsumexp(small.log_prob(all_images(small.image_shape, 2)).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4


def test_deconvolution_uses_the_small_map_everywhere():
    """The half-size map reaches the parameters of every pixel (gradients), and changing it changes the
    likelihood; a full-size map is refused with a clear error."""
    model = gated((1, 4, 4), 4, cond_channels=2, cond_upsample=1).eval()
    x = torch.randint(4, (2, 1, 4, 4))
    cond_map = torch.randn(2, 2, 2, 2, requires_grad=True)
    params = model.network(model.scale_input(x), model.check_cond(cond_map, 2))  # (2, P, 4, 4)
    for i in range(4):
        for j in range(4):
            (grad,) = torch.autograd.grad(params[:, :, i, j].sum(), cond_map, retain_graph=True)
            assert grad.abs().sum() > 0, f"pixel {(i, j)} ignores the map"
    with torch.no_grad():
        assert not torch.allclose(model.log_prob(x, cond_map), model.log_prob(x, torch.randn(2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2, 2\)"):
        model.log_prob(x, torch.randn(2, 2, 4, 4))
    with pytest.raises(ValueError, match="divisible"):
        gated((1, 5, 4), 4, cond_channels=2, cond_upsample=1)


@pytest.mark.parametrize("kw", [dict(cond_channels=2, cond_upsample=1), dict(skip_connections=False)], ids=str)
def test_fast_sampler_exact_with_deconvolution_and_without_skips(kw):
    from test_fast_sampling import trace_errors

    model = gated((3, 4, 4), 5, **kw).eval()
    cond = model.check_cond(torch.randn(2, 2, 2, 2), 2) if model.cond_channels else None
    trace: list = []
    with torch.no_grad():
        images = model.fast_sample(2, cond, None, None, generator=torch.Generator().manual_seed(0), trace=trace)
        assert trace_errors(model, images, trace, cond) < 1e-4


def test_without_skip_connections_the_output_reads_the_last_horizontal_stream():
    model = gated((1, 4, 4), 4, skip_connections=False).eval()
    assert all(layer.skip is None for layer in model.stack.layers)
    x = torch.randint(4, (2, 1, 4, 4))
    inputs = model.scale_input(x)
    v, h = shift_down(inputs), inputs
    for layer in model.stack.layers:
        v, h, _ = layer(v, h)
    torch.testing.assert_close(model(x), model.output(h))
