// Internal interfaces of dnx_runtime: the backend protocol and helpers shared by the .cpp files.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "dnx/runtime.hpp"

namespace dnx {

// One inference engine. run() gets a batch the backend accepts (see min_batch, max_batch) and returns
// {N, num_classes} float32 outputs. run() must be safe to call from several threads at once (the
// Model's thread-safety contract rests on it).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int64_t min_batch() const { return 1; }
  virtual int64_t max_batch() const { return 0; }  // 0: any batch size
  virtual Tensor run(const Tensor& batch) const = 0;
};

using Metadata = std::map<std::string, std::string>;

// Parse the `dnx.*` string map (ONNX metadata_props or the sidecar's "metadata" object).
ModelInfo parse_metadata(const Metadata& props, const std::string& source);

// What a TensorRT plan's sidecar (<plan>.json) says about where it may run.
struct PlanRequirements {
  std::string tensorrt_version;    // sidecar "tensorrt": {"version": "11.0.0"}
  std::string gpu_name;            // sidecar "gpu": {"name": "NVIDIA H100 80GB HBM3"}
  std::string compute_capability;  // sidecar "gpu": {"compute_capability": "9.0"}
  bool version_compatible = false;     // sidecar "builder": {"version_compatible": true}
  std::string hardware_compatibility;  // sidecar "builder": {"hardware_compatibility": "ampere+" | "same-cc"}
};

// Empty when the plan may run here, else a one-line reason it may not. The rules are TensorRT's (and
// the Python runner's check_plan_compatibility): the same TensorRT version up to the patch number, or
// that version or later for a version-compatible plan; the same GPU model and compute capability,
// or the same capability for "same-cc", or capability >= 8.0 for "ampere+".
std::string plan_incompatibility(const std::string& plan, const PlanRequirements& need,
                                 const std::string& tensorrt_version, const std::string& gpu_name,
                                 const std::string& compute_capability);

// Resize an interleaved 8-bit image (bilinear/triangle filter, pixel-centre aligned, like PIL).
Image resize_image(const Image& image, int width, int height);

std::unique_ptr<Backend> open_onnxruntime(const std::string& path, ModelInfo* info);
std::unique_ptr<Backend> open_tensorrt(const std::string& path, const ModelInfo& info,
                                       const PlanRequirements& need);

}  // namespace dnx
