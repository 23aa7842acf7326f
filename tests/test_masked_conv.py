import pytest
import torch

from pixelmodels.nn import MaskedConv2d, make_mask


def test_mask_a_and_b_centre_follow_rgb_order():
    a = make_mask(3, 3, (3, 3), "A", 3)
    b = make_mask(3, 3, (3, 3), "B", 3)
    expected_a = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.float)
    assert torch.equal(a[:, :, 1, 1], expected_a)
    assert torch.equal(b[:, :, 1, 1], expected_a + torch.eye(3))
    for m in (a, b):
        assert (m[:, :, 0, :] == 1).all()  # the row above
        assert (m[:, :, 1, 0] == 1).all()  # left of the centre
        assert (m[:, :, 1, 2] == 0).all() and (m[:, :, 2, :] == 0).all()  # right of and below the centre


def test_channel_groups_for_uneven_widths():
    # 8 hidden features over 3 colours: groups of sizes 3, 3, 2, assigned contiguously
    m = make_mask(3, 8, (1, 1), "A", 3)[:, :, 0, 0]
    assert m[:3].sum() == 0  # R features see no colour of the current pixel
    assert torch.equal(m[3:6], torch.tensor([[1.0, 0, 0]] * 3))
    assert torch.equal(m[6:], torch.tensor([[1.0, 1, 0]] * 2))


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups", [1, 3])
def test_output_depends_only_on_earlier_subpixels(mask_type, groups):
    conv = MaskedConv2d(3, 6, 5, mask_type, groups)
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    y = conv(x)
    for o in range(6):
        g_out = o * groups // 6
        (grad,) = torch.autograd.grad(y[0, o, 3, 3], x, retain_graph=True)
        seen = grad[0].abs() > 0  # (C, H, W)
        assert not seen[:, 4:, :].any() and not seen[:, 3, 4:].any()
        for ci in range(3):
            g_in = ci * groups // 3
            visible = g_in < g_out or (mask_type == "B" and g_in == g_out)
            assert bool(seen[ci, 3, 3]) == visible


def test_mask_is_not_written_into_the_weight():
    conv = MaskedConv2d(1, 1, 3, "A")
    assert (conv.weight != 0).sum() > 4  # the stored weight keeps its (masked-out) entries
    assert "mask" not in conv.state_dict()


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(1, 1, 4, "A")
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(ValueError, match="colour group"):
        MaskedConv2d(3, 2, 3, "B", 3)
