"""The zoo reproduces the paper's architectures: exact torchvision counts, Table 2 rounding, MACs."""

import pytest
import torch

from densenet_deploy.core.errors import UnknownModelError
from densenet_deploy.models import build_model, get_spec
from densenet_deploy.models.counting import count_macs, count_params


@pytest.mark.parametrize(
    "name, expected",
    [
        ("densenet121", 7_978_856),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("densenet161", 28_681_000),
    ],
)
def test_imagenet_param_counts_match_torchvision_exactly(name, expected):
    assert count_params(build_model(name)) == expected


@pytest.mark.parametrize(
    "name, millions",
    [
        ("densenet_bc100_k12", 0.8),
        ("densenet40_k12", 1.0),
        ("densenet100_k12", 7.0),
        ("densenet100_k24", 27.2),
        ("densenet_bc250_k24", 15.3),
        ("densenet_bc190_k40", 25.6),
    ],
)
def test_cifar_param_counts_round_to_table2(name, millions):
    assert round(count_params(build_model(name, num_classes=10)) / 1e6, 1) == millions


def test_densenet121_macs_within_2_percent_of_torchvision():
    macs = count_macs(build_model("densenet121"), (3, 224, 224))
    assert abs(macs / 2.834e9 - 1) < 0.02


def test_macs_scale_with_input_area():
    model = build_model("densenet_bc22_k8")
    assert count_macs(model, (3, 64, 64)) == pytest.approx(4 * count_macs(model, (3, 32, 32)), rel=0.01)


def test_torchvision_key_names():
    keys = build_model("densenet121").state_dict().keys()
    for key in (
        "features.conv0.weight",
        "features.norm0.running_mean",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.transition1.norm.weight",
        "features.transition3.conv.weight",
        "features.denseblock4.denselayer16.conv1.weight",
        "features.norm5.bias",
        "classifier.weight",
    ):
        assert key in keys


def test_composite_function_is_preactivation_bn_relu_conv():
    layer = build_model("densenet_bc22_k8").features.denseblock1.denselayer1
    names = [n for n, _ in layer.named_children()]
    assert (
        names.index("norm1")
        < names.index("relu1")
        < names.index("conv1")
        < names.index("norm2")
        < names.index("relu2")
        < names.index("conv2")
    )
    basic = build_model("densenet40_k12").features.denseblock1.denselayer1
    assert basic.conv1.kernel_size == (3, 3) and not basic.bottleneck


def test_cifar_structure_follows_the_paper():
    bc = build_model("densenet_bc100_k12")
    assert bc.features.conv0.out_channels == 24 and bc.features.conv0.kernel_size == (3, 3)
    assert len(bc.features.denseblock1) == 16  # (100 - 4) / 6
    # compression 0.5: block 1 output 24 + 16*12 = 216 -> 108
    assert bc.features.transition1.conv.out_channels == 108
    plain = build_model("densenet40_k12")
    assert plain.features.conv0.out_channels == 16 and len(plain.features.denseblock1) == 12
    assert plain.features.transition1.conv.out_channels == plain.features.transition1.conv.in_channels


def test_imagenet_stem_and_blocks():
    model = build_model("densenet264")
    assert model.features.conv0.kernel_size == (7, 7) and model.features.conv0.stride == (2, 2)
    assert [len(getattr(model.features, f"denseblock{i}")) for i in range(1, 5)] == [6, 12, 64, 48]
    assert build_model("densenet161").features.conv0.out_channels == 96


@pytest.mark.parametrize(
    "bad", ["densenet_bc101_k12", "densenet41_k12", "densenet_bc4_k12", "resnet7", "densenet121x", "densenet_bc100_k0"]
)
def test_invalid_names_and_depths_raise_with_what_is_valid(bad):
    with pytest.raises(UnknownModelError, match="valid"):
        get_spec(bad)


def test_did_you_mean():
    with pytest.raises(UnknownModelError, match="did you mean 'densenet121'"):
        get_spec("densenet12l")


def test_num_classes_and_in_channels_are_parameters():
    model = build_model("densenet_bc22_k8", num_classes=7, in_channels=1).eval()
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model("densenet_bc22_k8", drop_rate=0.2)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_memory_efficient_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = build_model("densenet_bc22_k8")
    efficient = build_model("densenet_bc22_k8", memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    outs, grads = [], []
    for model in (plain, efficient):
        model.train()
        out = model(x)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(model.features.conv0.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_kaiming_init_and_bn_defaults():
    model = build_model("densenet_bc22_k8")
    conv = model.features.denseblock2.denselayer1.conv1.weight
    fan_in = conv.shape[1] * conv.shape[2] * conv.shape[3]
    assert conv.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.15)
    assert torch.all(model.features.norm5.weight == 1) and torch.all(model.classifier.bias == 0)


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("densenet040_k12", "densenet40_k12"),
        ("densenet40_k012", "densenet40_k12"),
        ("densenet_bc0100_k0012", "densenet_bc100_k12"),
    ],
)
def test_leading_zeros_normalise_to_the_canonical_name(name, canonical):
    spec = get_spec(name)
    assert spec.name == canonical and spec == get_spec(canonical)
    assert build_model(name).dnx_config["name"] == canonical


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("densenet40_k257", r"k must be in 1\.\.256"),
        ("densenet1003_k12", r"valid depths for DenseNet are 7\.\.1000"),
        ("densenet_bc1000_k256", r"G parameters"),
    ],
)
def test_grammar_is_bounded(bad, pattern):
    with pytest.raises(UnknownModelError, match=pattern):
        get_spec(bad)


def test_largest_table2_models_stay_within_bounds():
    for name in ("densenet_bc250_k24", "densenet_bc190_k40"):
        assert get_spec(name).name == name


def test_allocation_failure_while_building_is_a_one_line_error():
    from densenet_deploy.core.errors import DnxError

    # 10**12 classes: the classifier alone cannot be allocated.
    with pytest.raises(DnxError, match="not enough memory to build densenet_bc10_k8"):
        build_model("densenet_bc10_k8", num_classes=10**12)


def test_memory_efficient_training_step_updates_bn_stats_once():
    """The checkpointed bottleneck is recomputed in backward; that must not update BN running stats again."""
    torch.manual_seed(0)
    plain = build_model("densenet_bc22_k8", num_classes=10)
    efficient = build_model("densenet_bc22_k8", num_classes=10, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for model in (plain, efficient):
        model.train()
        torch.nn.functional.cross_entropy(model(x), y).backward()
    a, b = plain.state_dict(), efficient.state_dict()
    counters = [k for k in a if k.endswith("num_batches_tracked")]
    assert counters and all(int(b[k]) == int(a[k]) == 1 for k in counters)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_counts_from_the_spec_equal_what_pytorch_counts():
    """`dnx models`/`dnx info NAME` count from the spec (no model built, no torch): for every listed model, and
    for other heads, channels and input sizes, the figures equal model.parameters() and flop_counter's."""
    import torch

    from densenet_deploy.models import build_model, get_spec, listed_names
    from densenet_deploy.models.counting import count_macs, count_params, spec_counts
    from densenet_deploy.reports.zoo_listing import list_models

    rows = {r["name"]: r for r in list_models().models}
    cases = [(name, None, None, None) for name in listed_names()]
    cases += [
        ("densenet121", 10, 1, (1, 96, 96)),
        ("densenet121", None, None, (3, 32, 32)),
        ("resnet18", 7, None, (3, 64, 80)),
        ("densenet_bc22_k8", None, 1, (1, 16, 16)),
        ("preact_resnet164", 100, None, None),
        ("densenet40_k12", None, None, (3, 40, 24)),
    ]
    for name, classes, channels, size in cases:
        spec = get_spec(name)
        counts = spec_counts(spec, classes, channels, size)
        with torch.device("meta"):  # shapes only: the same counts as a real model (test below), in seconds
            model = build_model(name, num_classes=classes, in_channels=channels)
            expected = (count_params(model), count_macs(model, size or spec.input_size))
        assert (counts.params, counts.macs) == expected, (name, classes, channels, size)
        bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
        assert counts.bn_params == bn, name
        if size is None and classes is None and channels is None:
            assert (rows[name]["params"], rows[name]["macs"]) == expected
    assert rows["densenet121"]["macs"] == 2_834_161_664
    for name in ("densenet121", "densenet_bc100_k12", "preact_resnet164"):  # the meta device counts like real models
        model = build_model(name)
        assert (rows[name]["params"], rows[name]["macs"]) == (
            count_params(model),
            count_macs(model, get_spec(name).input_size),
        )


def test_listing_and_info_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from densenet_deploy.cli.main import cli; "
        "r = CliRunner().invoke(cli, ['models', '--json']); s = CliRunner().invoke(cli, ['info', 'densenet121']); "
        "print(r.exit_code, s.exit_code, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    assert out == ["0", "0", "False"], out
