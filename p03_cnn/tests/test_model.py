import pytest
import torch

from p03_cnn.model import FlipTTA, build_model, receptive_field, with_tta


@pytest.mark.parametrize("arch", ["resnet", "plain"])
@pytest.mark.parametrize("batch", [1, 7])
def test_logit_shapes(arch, batch):
    model = build_model(arch, classes=10, width=4).eval()
    assert model(torch.zeros(batch, 1, 28, 28)).shape == (batch, 10)


def test_residual_stride_and_skip_shapes():
    model = build_model("resnet", width=4, blocks=2)
    feats = model.stages(model.stem(torch.zeros(2, 1, 28, 28)))
    assert feats.shape == (2, 16, 7, 7)  # 4 -> 8 -> 16 channels, 28 -> 14 -> 7 pixels
    wide = build_model("resnet", width=4, last_width=24).eval()  # only the last stage widened
    assert wide.stages(wide.stem(torch.zeros(2, 1, 28, 28))).shape == (2, 24, 7, 7)
    assert wide.embed(torch.zeros(3, 1, 28, 28)).shape == (3, 24) and wide(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_receptive_field_matches_hand_count():
    # plain: 3x3 (3), 3x3 (5), pool 2/2 (6, jump 2), 3x3 (10), 3x3 (14), pool 2/2 (16, jump 4), 3x3 (24)
    rf = [r["rf"] for r in receptive_field(build_model("plain", width=4).layout)]
    assert rf == [3, 5, 6, 10, 14, 16, 24]
    # resnet: stem 3; stage1 5, 7; stage2 conv1 stride 2 -> 9 (jump 2), 13; stage3 17 (jump 4), 25
    rf = [r["rf"] for r in receptive_field(build_model("resnet", width=4).layout)]
    assert rf == [3, 5, 7, 9, 13, 17, 25]


def test_receptive_field_matches_gradient_support():
    """The input pixels that influence one output unit of the plain CNN's last conv span exactly its field.

    Positive weights and inputs keep every ReLU open; average pools (same 2/2 geometry) pass gradient to all
    four pixels where max pools would pick one."""
    model = build_model("plain", width=2).eval()
    with torch.no_grad():
        for i, m in enumerate(model.features):
            if isinstance(m, torch.nn.MaxPool2d):
                model.features[i] = torch.nn.AvgPool2d(2)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(0.1)
    x = (torch.rand(1, 1, 64, 64) + 0.1).requires_grad_(True)
    out = model.features(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    support = x.grad[0, 0].abs() > 0
    rows, cols = support.any(1).nonzero().ravel(), support.any(0).nonzero().ravel()
    rf = receptive_field(model.layout)[-1]["rf"]
    assert int(rows.max() - rows.min() + 1) == rf and int(cols.max() - cols.min() + 1) == rf


def test_flip_tta_is_the_mean_of_the_two_views():
    torch.manual_seed(0)
    model = build_model("resnet", width=4).eval()
    x = torch.randn(5, 1, 28, 28)
    tta = with_tta(model, True)
    assert isinstance(tta, FlipTTA) and with_tta(model, False) is model
    with torch.no_grad():
        one, mirrored = model(x), model(torch.flip(x, dims=[3]))
        assert torch.allclose(tta(x), (one + mirrored) / 2, atol=1e-5)
        assert torch.allclose(tta.embed(x), (model.embed(x) + model.embed(torch.flip(x, dims=[3]))) / 2, atol=1e-6)
        assert torch.allclose(tta(x), tta(torch.flip(x, dims=[3])), atol=1e-5)  # mirror-invariant by construction
        assert not torch.allclose(one, mirrored, atol=1e-3)  # ... which the bare model is not
