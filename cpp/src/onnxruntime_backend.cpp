// ONNX Runtime backend (C++ API): session, dnx.* metadata_props, float32 NCHW in -> logits out.
//
// The C++ wrapper sits on the versioned C API: OrtGetApiBase()->GetApi(ORT_API_VERSION) returns the
// function table of the headers' version from any newer library, so headers from one release work
// with a newer libonnxruntime (e.g. the one inside the Python wheel). ORT_API_MANUAL_INIT lets us turn
// an older library (GetApi() == nullptr) into an error message instead of a crash.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <fstream>
#include <sstream>

#include "internal.hpp"

namespace dnx {
namespace {

// --- the model file's metadata without ONNX Runtime -------------------------------------------------
// When ONNX Runtime cannot build a session (e.g. no kernel for a bf16 Conv) it cannot report metadata
// either; this reads ModelProto.metadata_props (field 14, {key = 1, value = 2}) from the protobuf wire
// format directly, skipping every other field (the graph included) without loading it.
bool read_varint(std::istream& in, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const int byte = in.get();
    if (byte == std::char_traits<char>::eof()) return false;
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

// Calls on_field(field number, payload) for each length-delimited field of the message in `in` (read to
// the end of the stream) that `wanted` accepts and that is at most 1 MiB long; other fields are skipped
// unread. False when the bytes are not a well-formed message.
template <typename Wanted, typename OnField>
bool walk_message(std::istream& in, Wanted wanted, OnField on_field) {
  uint64_t tag = 0;
  while (read_varint(in, &tag)) {
    const uint64_t field = tag >> 3, wire = tag & 7;
    uint64_t len = 0;
    if (wire == 0) {
      if (!read_varint(in, &len)) return false;
    } else if (wire == 1 || wire == 5) {
      in.seekg(wire == 1 ? 8 : 4, std::ios::cur);
    } else if (wire == 2) {
      if (!read_varint(in, &len) || len > (uint64_t{1} << 40)) return false;
      if (wanted(field) && len <= (uint64_t{1} << 20)) {
        std::string payload(len, '\0');
        if (!in.read(payload.data(), static_cast<std::streamsize>(len))) return false;
        on_field(field, payload);
      } else {
        in.seekg(static_cast<std::streamoff>(len), std::ios::cur);
      }
    } else {
      return false;
    }
    if (!in) return false;
  }
  return true;
}

// The dnx.* entries of an ONNX file's metadata_props; empty when none or not readable.
Metadata file_metadata(const std::string& path) {
  Metadata props;
  std::ifstream in(path, std::ios::binary);
  if (!in) return props;
  const auto metadata_props = [](uint64_t field) { return field == 14; };
  walk_message(in, metadata_props, [&](uint64_t, const std::string& entry) {
    std::istringstream entry_in(entry);
    std::string key, value;
    const auto key_or_value = [](uint64_t field) { return field == 1 || field == 2; };
    walk_message(entry_in, key_or_value, [&](uint64_t field, const std::string& text) {
      (field == 1 ? key : value) = text;
    });
    if (key.rfind("dnx.", 0) == 0) props[key] = value;
  });
  return props;
}

// Why ONNX Runtime could not open `path`, for the one-line error.
Error session_error(const std::string& path, const Ort::Exception& exc) {
  if (exc.GetOrtErrorCode() != ORT_NOT_IMPLEMENTED) {
    return Error(path + " is not a readable ONNX model (" + exc.what() + ")");
  }
  // The file parsed but ONNX Runtime's CPU provider lacks a kernel for one of its ops.
  const Metadata meta = file_metadata(path);
  const auto precision = meta.find("dnx.precision");
  if (precision != meta.end() && precision->second == "bf16") {
    return Error(path + " is a bf16 graph, made for TensorRT: ONNX Runtime has no bfloat16 kernels to run it (" +
                 exc.what() + "); run the fp32 export with dnx-infer, or build a TensorRT plan from this file "
                 "(dnx build-engine) and run that");
  }
  return Error(path + ": ONNX Runtime has no kernel for an operator of this graph (" + exc.what() +
               "); run the fp32 export, or a TensorRT plan");
}

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
      throw session_error(path, exc);
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

  Tensor run(const Tensor& batch) const override {
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
  // Mutable because the C++ wrapper's Session::Run is non-const, although ONNX Runtime documents
  // concurrent Run calls on one session as safe: run() is const and thread-safe.
  mutable Ort::Session session_;
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
