"""densenet-deploy: DenseNet from PyTorch to ONNX, INT8/FP16, TensorRT, OpenVINO, C++ and Triton."""

__version__ = "0.1.0"
