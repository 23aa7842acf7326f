"""Row LSTM and Diagonal BiLSTM specifics: skew, gate groups, receptive fields, the incremental sampler."""

import gzip

import pytest
import torch

import pixelmodels
from contract import all_images
from pixelmodels.nn import make_mask
from pixelmodels.nn.recurrent import GateConv2d, skew, unskew

MODELS = ["row_lstm", "diagonal_bilstm"]


def tiny(name, shape, k, **kw):
    hparams = dict(hidden_channels=6, num_layers=2, first_kernel_size=3) | kw
    model = pixelmodels.build(name, image_shape=shape, num_levels=k, **hparams).eval()
    with torch.no_grad():  # learned initial states start at zero: give them values the samplers must use
        for key, param in model.named_parameters():
            if key.endswith("init.state"):
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)))
    return model


# Options the incremental samplers must follow exactly (each is also a contract-suite variant).
OPTIONS = {
    "default": {},
    "learned_init": dict(learned_init=True),
    "no_residual_no_skip": dict(residual=False, skip_connections=False),
}


def test_skew_places_row_i_i_columns_right_and_unskew_inverts_it():
    x = torch.arange(2 * 3 * 4, dtype=torch.float).view(1, 2, 3, 4) + 1
    s = skew(x)
    assert s.shape == (1, 2, 3, 6)
    for i in range(3):
        assert torch.equal(s[0, :, i, i : i + 4], x[0, :, i])
        assert s[0, :, i, :i].eq(0).all() and s[0, :, i, i + 4 :].eq(0).all()
    assert torch.equal(unskew(s, 4), x)


def test_gate_conv_gives_every_gate_the_units_colour_group():
    conv = GateConv2d(9, 5, (1, 3), "B", num_groups=3)
    expected = make_mask(9, 5, (1, 3), "B", 3)
    for gate in conv.mask.split(5, dim=0):
        assert torch.equal(gate, expected)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape,k", [((1, 4, 5), 3), ((3, 3, 4), 4)], ids=["gray", "rgb"])
@pytest.mark.parametrize("with_known", [False, True], ids=["free", "known"])
@pytest.mark.parametrize("option", OPTIONS)
def test_fast_sampler_params_equal_a_full_forward(name, shape, k, with_known, option):
    """Every step's parameters equal those of one full forward pass on the final image (DESIGN.md section 2)."""
    model = tiny(name, shape, k, **OPTIONS[option])
    g = torch.Generator().manual_seed(5)
    known = mask = None
    if with_known:
        known = torch.randint(k, (3, *shape), generator=g)
        mask = torch.rand(3, *shape, generator=g) < 0.4
    trace = []
    out = model.fast_sample(3, None, known, mask, generator=g, trace=trace)
    order = model.order()
    assert [s for s, _ in trace] == list(range(len(order)))
    with torch.no_grad():
        full = model.network(model.scale_input(out))  # (3, P, H, W)
    for (_, params), (h, w, channels) in zip(trace, order, strict=True):
        idx = [i for c in channels for i in model.head.param_indices(c)]
        torch.testing.assert_close(params[:, idx], full[:, idx, h, w], atol=1e-4, rtol=0)
    if with_known:
        assert torch.equal(out[mask], known[mask])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape,k", [((1, 4, 3), 3), ((3, 2, 3), 4)], ids=["gray", "rgb"])
@pytest.mark.parametrize("option", OPTIONS)
def test_fast_and_naive_samplers_draw_the_same_images(name, shape, k, option):
    """Both samplers consume the generator identically, so one seed gives one image set."""
    model = tiny(name, shape, k, **OPTIONS[option])
    fast = model.sample(4, generator=torch.Generator().manual_seed(11), method="fast")
    naive = model.sample(4, generator=torch.Generator().manual_seed(11), method="naive")
    assert torch.equal(fast, naive)
    assert model.sample(4, generator=torch.Generator().manual_seed(11)).equal(fast)  # "auto" picks fast


def seen_from(model, h, w):
    """Which input pixels the parameters at (h, w) depend on, (H, W) bool, from gradients."""
    _, height, width = model.image_shape
    x = (torch.rand(2, *model.image_shape) * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.network(x)[:, :, h, w].abs().sum(), x)
    return grad.abs().sum(dim=(0, 1)) > 0


def test_row_lstm_sees_a_triangle():
    """Row LSTM (section 3.1): the 1x3 state-to-state conv reaches one column further right per row up. With a
    3x3 mask-A input conv, from (6, 2) of an 8x8 image row 6 - d is seen up to column 2 + d, not beyond
    (a k x k input conv widens that by k // 2 - 1)."""
    model = tiny("row_lstm", (1, 8, 8), 2, hidden_channels=8)
    seen = seen_from(model, 6, 2)
    for d in range(1, 7):
        assert seen[6 - d, : 2 + d + 1].all(), f"row {6 - d} should be seen up to column {2 + d}"
        assert not seen[6 - d, 2 + d + 1 :].any(), f"row {6 - d} is seen beyond the triangle"
    assert seen[6, :2].all() and not seen[6, 2:].any()


def test_diagonal_bilstm_sees_every_earlier_pixel():
    """Full context (section 3.2): every pixel before (i, w) in raster order, including the far up-right
    corner PixelCNN and Row LSTM miss, and nothing after it."""
    model = tiny("diagonal_bilstm", (1, 7, 7), 2, hidden_channels=8)
    for i, w in [(5, 1), (3, 3), (6, 6), (1, 0)]:
        seen = seen_from(model, i, w)
        earlier = (torch.arange(49) < i * 7 + w).view(7, 7)
        assert torch.equal(seen, earlier), f"at ({i}, {w}) seen:\n{seen.int()}"


def test_paper_diagonal_bilstm_misses_the_end_of_the_previous_row():
    """The paper's layer (full_context=False): every row-(i-1) feature is mask-A, so none holds pixel
    (i - 1, W - 1); from (i, w) with w < W - 1 - k // 2 that one pixel is out of reach (module docstring)."""
    model = tiny("diagonal_bilstm", (1, 7, 7), 2, hidden_channels=8, full_context=False)
    seen = seen_from(model, 5, 1)
    earlier = (torch.arange(49) < 5 * 7 + 1).view(7, 7)
    assert not seen[4, 6]
    earlier[4, 6] = False
    assert torch.equal(seen, earlier), f"seen:\n{seen.int()}"
    assert seen_from(model, 5, 5)[4, 6]  # within the 3x3 input conv's reach


@pytest.mark.parametrize("name", MODELS)
def test_without_skip_connections_still_normalized(name):
    shape, k = (3, 1, 2), 2
    model = tiny(name, shape, k, skip_connections=False, hidden_channels=12)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(all_images(shape, k)).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_learned_initial_state_starts_at_zero_and_is_used(name):
    """learned_init=True computes the zero-state model at initialisation (same weights), and its initial state
    then changes the output (a sampler or forward pass that ignored it would not)."""
    shape, k = (1, 4, 4), 2
    torch.manual_seed(0)
    plain = pixelmodels.build(name, image_shape=shape, num_levels=k, hidden_channels=6, num_layers=2).eval()
    learned = pixelmodels.build(
        name, image_shape=shape, num_levels=k, hidden_channels=6, num_layers=2, learned_init=True
    ).eval()
    missing = learned.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.endswith("init.state") for key in missing)
    x = torch.randint(k, (3, *shape))
    with torch.no_grad():
        torch.testing.assert_close(learned(x), plain(x))
        for key, param in learned.named_parameters():
            if key.endswith("init.state"):
                param.fill_(0.5)
        assert not torch.allclose(learned(x), plain(x))


def test_without_residual_connections_layers_replace_their_input():
    """residual=False (the paper's 64x64 ImageNet model): the output differs from the residual model's with the
    same weights, and the model stays a normalized distribution."""
    shape, k = (3, 1, 2), 2
    torch.manual_seed(0)
    residual = tiny("row_lstm", shape, k, hidden_channels=12)
    plain = tiny("row_lstm", shape, k, hidden_channels=12, residual=False)
    plain.load_state_dict(residual.state_dict())
    images = all_images(shape, k)
    with torch.no_grad():
        assert not torch.allclose(plain(images), residual(images))
        total = torch.logsumexp(plain.log_prob(images).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_activation_scale_is_bounded_at_init(name):
    """Twelve residual LSTM layers (the CIFAR-10 depth) keep the output parameters at a sane scale."""
    model = tiny(name, (3, 8, 8), 256, hidden_channels=16, num_layers=12, first_kernel_size=7)
    x = torch.randint(256, (4, 3, 8, 8))
    with torch.no_grad():
        params = model(x)
    assert params.isfinite().all() and params.std() < 1.0


@pytest.mark.parametrize("name", MODELS)
def test_bad_hyperparameters_raise(name):
    with pytest.raises(ValueError, match="num_layers"):
        pixelmodels.build(name, image_shape=(1, 4, 4), num_levels=2, num_layers=0)
    with pytest.raises(ValueError, match="hidden_channels"):
        pixelmodels.build(name, image_shape=(3, 4, 4), num_levels=2, hidden_channels=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_trains_on_binarized_mnist(name, shared_data_dir):
    """A CPU-sized model learns on real binarized MNIST: after 60 Adam steps on 1000 training images, the
    NLL of 200 held-out validation images is below both its value at initialisation and the NLL of the best
    pixel-independent model (a Bernoulli per position fitted on the same training images)."""
    g = torch.Generator().manual_seed(0)

    def load(split, count):  # a random subset: the files are ordered by digit class
        with gzip.open(shared_data_dir / "binarized_mnist" / f"binarized_mnist_{split}.amat.gz", "rt") as f:
            lines = f.readlines()
        pick = torch.randperm(len(lines), generator=g)[:count].tolist()
        rows = [[int(v) for v in lines[i].split()] for i in pick]
        return torch.tensor(rows, dtype=torch.long).view(count, 1, 28, 28)

    train, valid = load("train", 1000), load("valid", 200)
    model = pixelmodels.build(name, image_shape=(1, 28, 28), num_levels=2, hidden_channels=16, num_layers=2)
    with torch.no_grad():
        before = -model.log_prob(valid).mean().item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        batch = train[torch.randint(len(train), (32,), generator=g)]
        loss = -model.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = -model.log_prob(valid).mean().item()
    p = train.float().mean(0).clamp(1e-3, 1 - 1e-3)  # (1, 28, 28)
    independent = -(valid * p.log() + (1 - valid) * (1 - p).log()).sum(dim=(1, 2, 3)).mean().item()
    assert after < before and after < independent, (before, after, independent)
