"""torchvision checkpoints (current and legacy keys, DataParallel prefix, wrapped dicts) load as is."""

import re

import pytest
import torch

from densenet_deploy.core.errors import CheckpointError
from densenet_deploy.models import build_model
from densenet_deploy.models.checkpoint import load_state_dict_strict, normalize_keys, read_checkpoint
from densenet_deploy.models.loading import load_model


def _legacy(state):
    # The spelling of torchvision's pre-0.2 DenseNet checkpoints: `norm.1`, `conv.2`, ...
    out = {}
    for key, value in state.items():
        out[re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)] = value
    return out


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(1)
    model = build_model("densenet_bc22_k8", num_classes=5).eval()
    # Non-trivial BN statistics so a wrongly mapped key would change the output.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("wrap", ["plain", "legacy", "module", "state_dict", "model", "legacy+module"])
def test_torchvision_style_checkpoints_load_with_identical_outputs(tmp_path, reference, wrap):
    state = reference.state_dict()
    if "legacy" in wrap:
        state = _legacy(state)
        assert any(".norm.1." in k for k in state)
    if "module" in wrap:
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {wrap: state} if wrap in ("state_dict", "model") else state
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    loaded = load_model("densenet_bc22_k8", weights=str(path))
    assert loaded.config["num_classes"] == 5  # taken from the classifier shape
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference(x), rtol=0, atol=0)
    assert len(loaded.weights_sha256) == 64


def test_densenet121_legacy_keys_are_recognised():
    state = _legacy(build_model("densenet121").state_dict())
    fixed = normalize_keys(state)
    assert set(fixed) == set(build_model("densenet121").state_dict())


def test_mismatch_names_missing_unexpected_and_shapes(reference):
    state = dict(reference.state_dict())
    state.pop("features.norm5.weight")
    state["extra.weight"] = torch.zeros(1)
    state["classifier.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(build_model("densenet_bc22_k8", num_classes=5), state, "x.pth")
    message = str(info.value)
    assert "missing: features.norm5.weight" in message and "unexpected: extra.weight" in message
    assert "classifier.weight: checkpoint (3, 3)" in message and "\n" not in message


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path, reference):
    good = tmp_path / "good.pth"
    torch.save(reference.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    for path in (truncated, text, tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value)


def test_checkpoints_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_bare_state_dict_as_model_argument_says_use_weights(tmp_path, reference):
    path = tmp_path / "bare.pth"
    torch.save(reference.state_dict(), path)
    with pytest.raises(CheckpointError, match="--weights"):
        load_model(str(path))


def test_checkpoints_without_bn_counters_load(tmp_path, reference):
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    loaded = load_model("densenet_bc22_k8", weights=str(path))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference(x), rtol=0, atol=0)
