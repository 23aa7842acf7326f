"""PixelCNN specifics, and checks that the contract suite's tests can fail."""

import pytest
import torch

import pixelmodels
from contract import correlated_data, dependency_violations, empirical_tv, fit
from pixelmodels.models.pixelcnn import ResidualBlock
from pixelmodels.ordering import Step
from pixelmodels.sampling import naive_sample


def tiny(shape=(1, 2, 2), k=2, **kw):
    return pixelmodels.build("pixelcnn", image_shape=shape, num_levels=k, hidden_channels=6, num_layers=2, **kw)


def test_blind_spot_is_real():
    """Stacked masked 3x3 convs never see pixels up-right beyond the first layer's reach (Gated PixelCNN
    paper, Figure 1): with a 3x3 first layer, pixel (4, 4) cannot see (2, 7) after two blocks."""
    model = pixelmodels.build(
        "pixelcnn", image_shape=(1, 8, 8), num_levels=2, hidden_channels=4, num_layers=2, first_kernel_size=3
    )
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model.network(x)[0, :, 4, 4].sum(), x)
    seen = grad[0, 0].abs() > 0
    assert seen[3, 5] and seen[4, 3]
    assert not seen[2, 7] and not seen[3, 7]


def test_tv_bound_detects_a_wrong_order():
    """The sampler-agreement test must fail for a sampler walking the pixels in the wrong order."""
    shape, k = (1, 2, 2), 2
    model = fit(tiny(shape, k), correlated_data(shape, k, 4096))
    model.order()  # fills the cache, then reverse it
    model._order = [Step(h, w, ch) for h, w, ch in reversed(model._order)]
    wrong = naive_sample(model, 20000, generator=torch.Generator().manual_seed(0))
    assert empirical_tv(model, wrong) > 0.1


def test_causality_check_catches_a_leak():
    model = tiny((3, 3, 3), 4)
    model.input_conv.mask[:] = 1.0  # a mask-A bug: the first layer sees the whole kernel
    leaks, _ = dependency_violations(model)
    assert leaks


class DoubledResidual(ResidualBlock):
    """pytorch-generative's bug: the residual is added twice."""

    def forward(self, x):
        return x + super().forward(x)


def output_std(model):
    x = torch.randint(model.num_levels, (16, *model.image_shape))
    with torch.no_grad():
        return model(x).std().item()


def test_activation_scale_is_bounded_at_init():
    model = pixelmodels.build("pixelcnn", image_shape=(3, 16, 16), num_levels=256, hidden_channels=32, num_layers=12)
    assert output_std(model) < 1.0
    for i, block in enumerate(model.blocks):
        doubled = DoubledResidual(32, 3, 3)
        doubled.load_state_dict(block.state_dict())
        model.blocks[i] = doubled
    assert output_std(model) > 1.0, "the bound must catch a doubled residual"


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'pixelcnnn'.*pixelcnn"):
        pixelmodels.build("pixelcnnn", image_shape=(1, 4, 4), num_levels=2)
    with pytest.raises(ValueError, match="unknown hyper-parameter.*hidden_size.*hidden_channels"):
        pixelmodels.build("pixelcnn", image_shape=(1, 4, 4), num_levels=2, hidden_size=3)
    with pytest.raises(ValueError, match="hidden_channels"):
        pixelmodels.build("pixelcnn", image_shape=(3, 4, 4), num_levels=2, hidden_channels=2)
    with pytest.raises(ValueError, match="num_levels"):
        pixelmodels.build("pixelcnn", image_shape=(1, 4, 4), num_levels=1)
    assert "pixelcnn" in pixelmodels.available_models()


def test_bits_per_dim():
    model = tiny((1, 2, 2), 2)
    x = torch.randint(2, (3, 1, 2, 2))
    nats = -model.log_prob(x)
    bpd = pixelmodels.bits_per_dim(nats, model.num_dims)
    torch.testing.assert_close(bpd, nats / (4 * torch.log(torch.tensor(2.0))))


@pytest.mark.parametrize("shape,k", [((1, 4, 5), 3), ((3, 3, 4), 4)], ids=["gray", "rgb"])
def test_skip_connections_keep_the_cached_sampler_exact(shape, k):
    """Layer-to-output connections (section 4) are summed per position, so the cached sampler still matches
    the full forward pass at every step, and draws what the naive sampler draws."""
    from test_fast_sampling import trace_errors

    model = tiny(shape, k, skip_connections=True, first_kernel_size=3).eval()
    plain = tiny(shape, k, first_kernel_size=3).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    x = torch.randint(k, (2, *shape))
    with torch.no_grad():
        assert not torch.allclose(model(x), plain(x))  # the skips are really used
        trace: list = []
        images = model.fast_sample(3, None, None, None, generator=torch.Generator().manual_seed(0), trace=trace)
        assert trace_errors(model, images, trace, None) < 1e-4
    naive = model.sample(3, generator=torch.Generator().manual_seed(1), method="naive")
    assert torch.equal(model.sample(3, generator=torch.Generator().manual_seed(1), method="fast"), naive)
