"""PixelCNN++ specifics: shifted convolutions, full context without a blind spot, odd sizes, dropout,
class conditioning, activation scale, and the categorical head option."""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from contract import dependency_violations
from pixelmodels.models.pixelcnn_pp import GatedResNet
from pixelmodels.nn import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    down_shift,
    right_shift,
)


def tiny(shape=(3, 4, 4), k=4, **kw):
    hp = dict(hidden_channels=4, num_layers=1, num_mixtures=2, dropout=0.0) | kw
    return pixelmodels.build("pixelcnn_pp", image_shape=shape, num_levels=k, **hp)


def receptive_field(module, x: torch.Tensor, i: int, j: int, *args) -> torch.Tensor:
    """Boolean (H, W) map of the input positions output (i, j) depends on."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module(x, *args)[:, :, i, j].sum(), x)
    return grad.abs().sum(dim=(0, 1)) > 0


def window(h, w, rows, cols) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[rows, cols] = True
    return m


def test_shifted_convolutions_see_exactly_their_window():
    x = torch.rand(2, 3, 6, 7)
    assert torch.equal(
        receptive_field(DownShiftedConv2d(3, 4, (2, 3)), x, 3, 4), window(6, 7, slice(2, 4), slice(3, 6))
    )
    assert torch.equal(
        receptive_field(DownRightShiftedConv2d(3, 4, (2, 2)), x, 3, 4), window(6, 7, slice(2, 4), slice(3, 5))
    )
    # at the border the padding stands in for the missing rows / columns
    assert torch.equal(receptive_field(DownRightShiftedConv2d(3, 4), x, 0, 0), window(6, 7, 0, 0))
    # stride 2 halves odd sizes to ceil(n / 2)
    assert DownShiftedConv2d(3, 4, (2, 3), stride=2)(x).shape[-2:] == (3, 4)
    assert DownRightShiftedConv2d(3, 4, (2, 2), stride=2)(x).shape[-2:] == (3, 4)
    assert torch.equal(down_shift(x)[:, :, 1:], x[:, :, :-1]) and (down_shift(x)[:, :, 0] == 0).all()
    assert torch.equal(right_shift(x)[:, :, :, 1:], x[:, :, :, :-1]) and (right_shift(x)[:, :, :, 0] == 0).all()


def test_transposed_shifted_convolutions_read_only_the_low_resolution_parent():
    x = torch.rand(2, 3, 3, 4)
    up = DownShiftedConvTranspose2d(3, 4, (2, 3), stride=2)
    assert up(x, (5, 7)).shape == (2, 4, 5, 7)
    seen = receptive_field(up, x, 3, 4, (6, 8))
    assert seen[1].any() and not seen[[0, 2]].any()  # row 3 reads low-resolution row 1 only
    up_right = DownRightShiftedConvTranspose2d(3, 4, (2, 2), stride=2)
    assert torch.equal(receptive_field(up_right, x, 3, 4, (6, 8)), window(3, 4, 1, 2))
    with pytest.raises(ValueError, match="kernel"):
        DownRightShiftedConvTranspose2d(3, 4, (3, 3), stride=2)


def test_full_context_no_blind_spot():
    """Every pixel sees every pixel before it in raster order (the up-right ones PixelCNN's blind spot hides)."""
    model = tiny((1, 8, 8), num_layers=2)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    params = model.network(x)
    for h, w in [(4, 4), (7, 0), (2, 6), (7, 7)]:
        (grad,) = torch.autograd.grad(params[:, :, h, w].sum(), x, retain_graph=True)
        before = window(8, 8, slice(0, h), slice(None)) | window(8, 8, h, slice(0, w))
        assert torch.equal(grad[:, 0].abs().sum(0) > 0, before), (h, w)


@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 6), (2, 3, 1)])
def test_odd_sizes_are_causal(shape):
    model = tiny(shape, num_resolutions=3)
    leaks, isolated = dependency_violations(model)
    assert leaks == [] and isolated == []
    x = torch.randint(4, (2, *shape))
    assert model.log_prob(x).shape == (2,)


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    x = torch.randint(4, (2, 3, 4, 4))
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_class_conditioning():
    model = tiny(num_classes=3)
    for block in model.modules():
        if isinstance(block, GatedResNet):
            torch.nn.init.normal_(block.class_bias.weight)  # zero at init: give the labels an effect
    x = torch.randint(4, (2, 3, 4, 4))
    assert model.num_classes == 3
    assert not torch.allclose(model.log_prob(x, torch.tensor([0, 0])), model.log_prob(x, torch.tensor([1, 1])))
    assert dependency_violations(model)[0] == []
    samples = model.sample(2, cond=2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 3, 4, 4)
    clone = pixelmodels.build(**model.config)
    assert clone.num_classes == 3
    with pytest.raises(ValueError, match="class labels"):
        model.log_prob(x, torch.tensor([0, 3]))


def test_categorical_head_sees_earlier_channels_of_its_pixel():
    model = tiny(head="categorical")
    assert not model.head.joint_channels and len(model.order()) == 3 * 16
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    params = model.network(x)
    k = model.num_levels
    (grad,) = torch.autograd.grad(params[0, 2 * k : 3 * k, 1, 1].sum(), x)  # blue logits at (1, 1)
    assert grad[0, :2, 1, 1].abs().sum() > 0 and grad[0, 2, 1, 1] == 0


def test_activation_scale_is_bounded_at_init():
    model = pixelmodels.build("pixelcnn_pp", image_shape=(3, 16, 16), num_levels=256, hidden_channels=32, num_layers=3)
    x = torch.randint(256, (4, 3, 16, 16))
    with torch.no_grad():
        assert model.eval()(x).std().item() < 1.0


def test_paper_configuration_size():
    """The CIFAR-10 model (5 blocks per stage, 160 filters, 10 logistics): ~53.6M parameters here (the
    reference's weight normalization adds one gain per output channel)."""
    model = pixelmodels.build("pixelcnn_pp", image_shape=(3, 32, 32), num_levels=256)
    assert model.head.num_params == 100 and model.dropout == 0.5 and model.num_resolutions == 3
    assert 50e6 < sum(p.numel() for p in model.parameters()) < 57e6


def test_bad_hyperparameters():
    for kw, match in [
        (dict(dropout=1.0), "dropout"),
        (dict(num_resolutions=0), "num_resolutions"),
        (dict(hidden_channels=2), "hidden_channels"),
        (dict(num_mixtures=0), "num_mixtures"),
        (dict(head="softmax"), "unknown head"),
    ]:
        with pytest.raises(ValueError, match=match):
            tiny(**kw)


def test_training_lowers_the_loss():
    model = tiny((3, 4, 4), k=8)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(2, (64, 1, 4, 4), generator=g).expand(64, 3, 4, 4) * 7  # black or white pixels, gray
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = -model.log_prob(data).mean().item()
    for _ in range(30):
        loss = -model.log_prob(data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("head", ["dmol", "categorical"])
def test_fast_sampler_params_equal_a_full_pass(head):
    """Every step's parameters of the cached sampler equal a full forward pass on the final images (the
    parameters the step's channels read: with a categorical head, later channels' logits still see zeros)."""
    model = tiny((3, 5, 3), head=head, num_classes=2).eval()
    trace = []
    cond = torch.tensor([0, 1])
    x = model.fast_sample(2, cond, None, None, generator=torch.Generator().manual_seed(0), trace=trace)
    full = model.network(model.scale_input(x), cond)
    assert len(trace) == len(model.order())
    for (_, params), (h, w, channels) in zip(trace, model.order(), strict=True):
        idx = sorted({i for c in channels for i in model.head.param_indices(c)})
        torch.testing.assert_close(params[:, idx], full[:, idx, h, w], atol=1e-4, rtol=0)


def test_fast_and_naive_samplers_draw_the_same_images():
    """Same parameters and the same random draws in the same order: identical samples."""
    model = tiny((3, 4, 4))
    fast = model.sample(3, method="fast", generator=torch.Generator().manual_seed(5))
    naive = model.sample(3, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast, naive)


@pytest.mark.slow
def test_cifar10_preset_takes_a_step_on_written_batches(tmp_path):
    """CIFAR-10 is not on this machine: the paper-size preset (53.6M parameters) takes one training step on tiny
    batches in the official format, batch 2 instead of 96 so it fits a CPU test; stopped after the step, so the
    end-of-run sample grid (1024 network passes of the full model) is not drawn."""
    from pixelmodels.training import apply_overrides, get_preset, train
    from pixelmodels.training import checkpoint as ckpt
    from test_data import _write_cifar

    _write_cifar(tmp_path / "data" / "cifar-10-batches-py")
    overrides = [f"data.data_dir={tmp_path / 'data'}", "data.batch_size=2", "data.eval_batch_size=2",
                 "data.max_eval_images=2", "train.device=cpu", "train.num_threads=1"]  # fmt: skip
    run = train(apply_overrides(get_preset("pixelcnn_pp-cifar10"), overrides), tmp_path / "run", stop_after=1)
    meta, tensors = ckpt.read_checkpoint(run, "last")
    assert meta["step"] == 1 and meta["model"]["hidden_channels"] == 160
    assert tensors["model/output.weight"].shape[0] == 100  # 10 logistics x 10 parameters per RGB pixel
