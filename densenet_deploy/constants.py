"""Names every artifact shares: I/O tensor names, batch axis, opset, metadata prefix."""

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
LAYOUT = "NCHW"

# Newest opset that ONNX Runtime 1.2x/1.3x and the TensorRT 10/11 ONNX parser (onnx-tensorrt,
# "supports opsets 9 to 22" in its README for TensorRT 10.x/11.x) both accept; DenseNet needs
# nothing newer than opset 13.
DEFAULT_OPSET = 17
MIN_OPSET = 13
MAX_OPSET = 22

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
