"""Converters from a PyTorch DenseNet or an ONNX model to deployable artifacts."""
