"""Names every artifact shares: I/O tensor names, batch axis, opset, metadata prefix."""

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
LAYOUT = "NCHW"

# Opsets every runtime we target parses (checked for the export step, issue 3):
# - TensorRT 10.0's parser: "supports operators in the inclusive range of opset 9 to opset 20"
#   (onnx-tensorrt docs/operators.md, release/10.0); later 10.x parsers go to 22, TensorRT 11.x to 25
#   (NVIDIA "ONNX Opset Guide": maximum opset 25, minimum 9).
# - ONNX Runtime implements every opset of the ONNX release it ships with, back to 7
#   (onnxruntime.ai/docs/reference/compatibility.html); 1.32 runs opset 20 models here.
# - torch 2.13's TorchScript exporter stops at 20 (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
# So the default is the newest opset all of TensorRT 10.x/11.x accept: 20. The floor is 13, the first
# opset with per-channel QuantizeLinear/DequantizeLinear (axis), which TensorRT INT8 Q/DQ needs.
DEFAULT_OPSET = 20
MIN_OPSET = 13
MAX_OPSET = 20

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
