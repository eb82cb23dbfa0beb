"""Shared, session-scoped fixtures: tiny models are trained/exported once per test session."""

from __future__ import annotations

import os

import pytest

# Keep tests on the 2-core CI machine predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def digits_checkpoint(artifacts_dir):
    """A small DenseNet-BC trained on scikit-learn's digits (the preset the demo uses)."""
    pytest.importorskip("sklearn", reason="scikit-learn (extra 'demo') provides the digits data")
    from densenet_deploy.train.loop import digits_preset, train

    options = digits_preset(output=str(artifacts_dir / "digits.pt"))
    train(options)
    return options.output


@pytest.fixture(scope="session")
def digits_onnx(digits_checkpoint, artifacts_dir):
    """The digits checkpoint exported to ONNX (fp32, dynamic batch, dnx metadata inside)."""
    from densenet_deploy.exporters.onnx import export_onnx

    path = artifacts_dir / "digits.onnx"
    export_onnx(digits_checkpoint, str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_onnx(artifacts_dir):
    """A random-weight CIFAR-style DenseNet-BC (L=22, k=8) at 32x32, exported once."""
    from densenet_deploy.exporters.onnx import export_onnx

    path = artifacts_dir / "tiny.onnx"
    export_onnx("densenet_bc22_k8", str(path))
    return str(path)
