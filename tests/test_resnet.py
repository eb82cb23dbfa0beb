"""ResNet baselines: torchvision-exact param counts and key names, pre-activation CIFAR ResNets, zoo flow."""

import pytest
import torch

from densenet_deploy.models import build_model, get_spec, listed_names
from densenet_deploy.models.counting import count_macs, count_params

# torchvision's published parameter counts (IMAGENET1K_V1 model cards) and GFLOPS (= MACs).
TORCHVISION = {
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80),
    "resnet152": (60_192_808, 11.51),
}


def _meta(name):
    with torch.device("meta"):  # counting needs shapes only: no allocation, no init cost
        return build_model(name)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_resnet_params_exact_and_macs_near_torchvision(name):
    params, gmacs = TORCHVISION[name]
    model = _meta(name)
    assert count_params(model) == params
    with torch.device("meta"):
        macs = count_macs(model, get_spec(name).input_size)
    assert macs / 1e9 == pytest.approx(gmacs, abs=0.01)


def test_resnet_state_dict_keys_are_torchvision_style():
    keys = list(build_model("resnet50").state_dict())
    # torchvision resnet50().state_dict() has 320 entries (incl. BN num_batches_tracked), resnet18 122.
    assert len(keys) == 320
    assert len(_meta("resnet18").state_dict()) == 122
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer4.2.bn3.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys, key
    assert keys[0] == "conv1.weight" and keys[-1] == "fc.bias"
    basic = _meta("resnet18").state_dict()
    assert "layer1.0.downsample.0.weight" not in basic and "layer2.0.downsample.0.weight" in basic
    assert tuple(build_model("resnet50").layer2[0].conv2.stride) == (2, 2)  # V1.5: stride on the 3x3


@pytest.mark.parametrize("name,millions", [("preact_resnet164", 1.7), ("preact_resnet1001", 10.2)])
def test_preact_resnet_params_to_0_1m(name, millions):
    model = _meta(name)
    params = count_params(model)
    bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    # He et al. report conv+fc weights; BN adds 24k (164) / 149k (1001), within 0.15M of the reported figure.
    assert round((params - bn) / 1e6, 1) == millions
    assert abs(params / 1e6 - millions) < 0.15
    spec = get_spec(name)
    assert spec.dataset == "cifar" and spec.num_classes == 10 and spec.input_size == (3, 32, 32)


def test_preact_resnet164_runs_and_has_three_stages_of_18_units():
    model = build_model("preact_resnet164").eval()
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [18, 18, 18]
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_resnets_listed_and_registered():
    names = listed_names()
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "preact_resnet164", "preact_resnet1001"):
        assert name in names
    assert get_spec("resnet50").family == "resnet" and get_spec("ResNet101").name == "resnet101"


def test_resnet_weights_round_trip_and_export(tmp_path):
    """A torchvision-style state dict loads through --weights; export to ONNX keeps params and parity."""
    from densenet_deploy.exporters.onnx import export_onnx
    from densenet_deploy.models.loading import load_model

    torch.manual_seed(3)
    source = build_model("resnet18", num_classes=7)
    path = tmp_path / "resnet18_state.pth"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, path)  # DataParallel-style keys
    loaded = load_model("resnet18", weights=str(path))
    assert loaded.config["num_classes"] == 7
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), source.eval()(x))
    result = export_onnx("resnet18", str(tmp_path / "r18.onnx"), input_size=64, samples=2)
    assert result.params == 11_689_512 and result.parity.passed


def test_untrained_preact_resnet1001_has_finite_outputs():
    """Kaiming init alone overflows 333 residual units to NaN in eval mode; zero-init branches do not."""
    import torch

    from densenet_deploy.models import build_model

    model = build_model("preact_resnet1001").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out).all()
    assert not torch.equal(out[0], out[1])  # still depends on the input
