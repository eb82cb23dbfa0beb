// ONNX Runtime backend (C++ API): session, dnx.* metadata_props, float32 NCHW in -> logits out.
//
// The C++ wrapper sits on the versioned C API: OrtGetApiBase()->GetApi(ORT_API_VERSION) returns the
// function table of the headers' version from any newer library, so headers from one release work
// with a newer libonnxruntime (e.g. the one inside the Python wheel). ORT_API_MANUAL_INIT lets us turn
// an older library (GetApi() == nullptr) into an error message instead of a crash.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include "internal.hpp"

namespace dnx {
namespace {

void init_api() {
  static const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (!api) {
    throw Error(std::string("the ONNX Runtime library (") + OrtGetApiBase()->GetVersionString() +
                ") is older than the headers this program was built with (API version " +
                std::to_string(ORT_API_VERSION) + "); link a newer libonnxruntime");
  }
  Ort::InitApi(api);
}

std::vector<int64_t> tensor_shape(const Ort::TypeInfo& type, const std::string& what) {
  if (type.GetONNXType() != ONNX_TYPE_TENSOR) throw Error(what + " is not a tensor");
  auto info = type.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    throw Error(what + " is not float32 (element type " + std::to_string(info.GetElementType()) + ")");
  }
  return info.GetShape();
}

class OnnxRuntimeBackend : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, ModelInfo* info)
      : env_(ORT_LOGGING_LEVEL_ERROR, "dnx"), session_(nullptr) {
    Ort::SessionOptions options;
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    try {
      session_ = Ort::Session(env_, path.c_str(), options);
    } catch (const Ort::Exception& exc) {
      throw Error(path + " is not a readable ONNX model (" + exc.what() + ")");
    }
    *info = parse_metadata(read_metadata(), path);

    // The graph must have the I/O the metadata names, with a shape that agrees with it.
    Ort::AllocatorWithDefaultOptions allocator;
    bool found_in = false, found_out = false;
    for (size_t i = 0; i < session_.GetInputCount(); ++i) {
      if (session_.GetInputNameAllocated(i, allocator).get() != info->input_name) continue;
      found_in = true;
      auto shape = tensor_shape(session_.GetInputTypeInfo(i), path + ": input " + info->input_name);
      const std::vector<int64_t> meta{info->batch > 0 ? info->batch : -1, info->channels, info->height, info->width};
      bool ok = shape.size() == 4;
      for (size_t d = 0; ok && d < 4; ++d) ok = shape[d] < 0 || meta[d] < 0 || shape[d] == meta[d];
      if (!ok) throw Error(path + ": graph input shape disagrees with dnx.input_size / dnx.batch metadata");
    }
    for (size_t i = 0; i < session_.GetOutputCount(); ++i) {
      if (session_.GetOutputNameAllocated(i, allocator).get() != info->output_name) continue;
      found_out = true;
      tensor_shape(session_.GetOutputTypeInfo(i), path + ": output " + info->output_name);
    }
    if (!found_in || !found_out) {
      throw Error(path + ": the graph has no " + (found_in ? "output " + info->output_name : "input " + info->input_name) +
                  " (named by dnx." + (found_in ? "output_name" : "input_name") + ")");
    }
    input_name_ = info->input_name;
    output_name_ = info->output_name;
  }

  std::string name() const override { return "onnxruntime"; }

  Tensor run(const Tensor& batch) override {
    try {
      auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::Value input = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(batch.data.data()),
                                                         batch.data.size(), batch.shape.data(), batch.shape.size());
      const char* in_names[] = {input_name_.c_str()};
      const char* out_names[] = {output_name_.c_str()};
      auto outputs = session_.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
      auto info = outputs.at(0).GetTensorTypeAndShapeInfo();
      Tensor out{info.GetShape(), {}};
      const float* data = outputs[0].GetTensorData<float>();
      out.data.assign(data, data + info.GetElementCount());
      return out;
    } catch (const Ort::Exception& exc) {
      throw Error(std::string("ONNX Runtime failed: ") + exc.what());
    }
  }

 private:
  Metadata read_metadata() const {
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::ModelMetadata meta = session_.GetModelMetadata();
    Metadata props;
    for (const auto& key : meta.GetCustomMetadataMapKeysAllocated(allocator)) {
      props[key.get()] = meta.LookupCustomMetadataMapAllocated(key.get(), allocator).get();
    }
    return props;
  }

  Ort::Env env_;
  Ort::Session session_;
  std::string input_name_, output_name_;
};

}  // namespace

std::unique_ptr<Backend> open_onnxruntime(const std::string& path, ModelInfo* info) {
  init_api();
  try {
    return std::make_unique<OnnxRuntimeBackend>(path, info);
  } catch (const Ort::Exception& exc) {
    throw Error(path + ": ONNX Runtime: " + exc.what());
  }
}

}  // namespace dnx
