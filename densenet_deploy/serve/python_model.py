"""Triton python-backend model that runs a dnx artifact with a dnx Runner (`dnx triton --backend python`).

`dnx triton` copies this file into ``REPO/NAME/VERSION/model.py`` beside the artifact; the config's
parameters name the artifact file (``dnx.artifact``) and the runner backend (``dnx.backend``). The
Python environment of Triton's python backend must have densenet-deploy and the artifact's runtime
(onnxruntime, openvino, tensorrt) installed. Triton's dynamic batcher hands `execute` several requests
at once; they run as one batch through the runner and the logits are split back per request.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from densenet_deploy.runners import open_runner

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        artifact = os.path.join(args["model_repository"], args["model_version"], params["dnx.artifact"])
        self.runner = open_runner(artifact, backend=params.get("dnx.backend") or None)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        _quiet_dlpack_capsule_warning()

    def execute(self, requests):
        arrays = [_from_triton(pb_utils.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        try:
            if self.batched:
                logits = self.runner.run(np.concatenate(arrays))
                parts = np.split(logits, np.cumsum([len(a) for a in arrays])[:-1])
            else:  # fixed-batch artifact: each request already is one full batch
                parts = [self.runner.run(a) for a in arrays]
        except Exception as exc:  # one line back to every client of this batch instead of a dead stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[_to_triton(self.output_name, p)]) for p in parts]

    def finalize(self):
        self.runner.close()


# Tensors cross the python backend through DLPack rather than `as_numpy()` / `Tensor(name, ndarray)`:
# the stubs that ship with Triton (and PyTriton) are built against NumPy 1.x, whose dtype descriptor
# layout NumPy 2 changed, so under NumPy 2 those calls silently give zeros and empty outputs. DLPack
# carries no NumPy ABI and works with NumPy >= 1.22 on both sides.
def _from_triton(tensor) -> np.ndarray:
    return np.array(np.from_dlpack(tensor), dtype=np.float32, copy=True)


def _to_triton(name: str, array: np.ndarray):
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(array, dtype=np.float32))


def _quiet_dlpack_capsule_warning():
    # The stub marks a consumed DLPack capsule "used_dlpack" where the protocol says "used_dltensor", so
    # NumPy's capsule destructor reports an unraisable "PyCapsule_GetPointer called with incorrect name"
    # for every response (the stub has already taken ownership; nothing leaks). Drop exactly that report.
    previous = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer" in str(unraisable.exc_value):
            return
        previous(unraisable)

    sys.unraisablehook = hook
