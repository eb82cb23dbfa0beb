// dnx::Model: artifact -> backend dispatch, metadata, preprocessing, batching and top-k.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <numeric>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "internal.hpp"

namespace dnx {
namespace {

using nlohmann::json;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string extension(const std::string& path) {
  auto slash = path.find_last_of('/');
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// The leading major.minor.patch of a version string as numbers ("11.0.0.20" -> {11, 0, 0}), so
// "10.10.0" sorts after "10.9.0".
std::vector<int> version_numbers(const std::string& version) {
  std::vector<int> parts;
  std::stringstream in(version);
  std::string part;
  while (parts.size() < 3 && std::getline(in, part, '.')) {
    try {
      parts.push_back(std::stoi(part));
    } catch (const std::exception&) {
      break;
    }
  }
  parts.resize(3, 0);
  return parts;
}

}  // namespace

size_t Tensor::numel() const {
  return std::accumulate(shape.begin(), shape.end(), size_t{1},
                         [](size_t acc, int64_t d) { return acc * static_cast<size_t>(std::max<int64_t>(d, 0)); });
}

// ---------------------------------------------------------------------------------------------
// Metadata (the dnx.* contract of densenet_deploy/metadata.py)
ModelInfo parse_metadata(const Metadata& props, const std::string& source) {
  std::vector<std::string> missing;
  for (const char* key : {"model", "num_classes", "input_size", "mean", "std"}) {
    if (!props.count(std::string("dnx.") + key)) missing.push_back(std::string("dnx.") + key);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw Error(source + " has no dnx metadata (" + list +
                " missing); export it with `dnx export` so its input size and normalisation are known");
  }
  auto raw = [&](const std::string& key) -> const std::string* {
    auto it = props.find("dnx." + key);
    return it == props.end() ? nullptr : &it->second;
  };
  auto parsed = [&](const std::string& key) -> json {
    try {
      return json::parse(*raw(key));
    } catch (const json::exception&) {
      throw Error(source + ": metadata dnx." + key + " is not valid JSON: '" + raw(key)->substr(0, 60) + "'");
    }
  };
  auto bad = [&](const std::string& key, const std::string& expected) {
    return Error(source + ": metadata dnx." + key + " = '" + raw(key)->substr(0, 60) + "' is not " + expected);
  };

  ModelInfo info;
  try {
    info.model = *raw("model");
    json n = parsed("num_classes");
    if (!n.is_number_integer() || n.get<int64_t>() < 1) throw bad("num_classes", "a positive integer");
    info.num_classes = n.get<int64_t>();

    json size = parsed("input_size");
    if (!size.is_array() || size.size() != 3) throw bad("input_size", "a list [C, H, W]");
    for (const auto& d : size) {
      if (!d.is_number_integer() || d.get<int64_t>() < 1) throw bad("input_size", "a list [C, H, W]");
    }
    info.channels = size[0].get<int64_t>();
    info.height = size[1].get<int64_t>();
    info.width = size[2].get<int64_t>();

    for (const char* key : {"mean", "std"}) {
      json values = parsed(key);
      auto& out = std::string(key) == "mean" ? info.mean : info.std;
      if (!values.is_array() || static_cast<int64_t>(values.size()) != info.channels) {
        throw bad(key, "a list of " + std::to_string(info.channels) + " numbers (one per channel)");
      }
      for (const auto& v : values) {
        if (!v.is_number()) throw bad(key, "a list of numbers");
        out.push_back(v.get<float>());
      }
    }
    for (float s : info.std) {
      if (s == 0.0f) throw bad("std", "a list of non-zero numbers");
    }
    if (raw("labels")) {
      json labels = parsed("labels");
      if (!labels.is_null()) {
        if (!labels.is_array()) throw bad("labels", "a list of strings");
        for (const auto& l : labels) info.labels.push_back(l.is_string() ? l.get<std::string>() : l.dump());
      }
    }
    if (raw("input_name")) info.input_name = *raw("input_name");
    if (raw("output_name")) info.output_name = *raw("output_name");
    if (raw("layout")) info.layout = *raw("layout");
    if (raw("precision")) info.precision = *raw("precision");
    if (raw("batch")) {
      json b = parsed("batch");
      if (!b.is_null() && (!b.is_number_integer() || b.get<int64_t>() < 1)) {
        throw bad("batch", "null (dynamic) or a positive integer");
      }
      info.batch = b.is_null() ? 0 : b.get<int64_t>();
    }
    if (raw("softmax")) {
      json s = parsed("softmax");
      if (!s.is_boolean()) throw bad("softmax", "true or false");
      info.softmax = s.get<bool>();
    }
  } catch (const json::exception& exc) {
    throw Error(source + ": unreadable dnx metadata (" + exc.what() + ")");
  }
  if (info.layout != "NCHW") {
    throw Error(source + ": layout " + info.layout + " is not supported (only NCHW)");
  }
  return info;
}

std::string plan_incompatibility(const std::string& plan, const PlanRequirements& need,
                                 const std::string& tensorrt_version, const std::string& gpu_name,
                                 const std::string& compute_capability) {
  const std::string fix = "; rebuild it on this machine with `dnx build-engine`";
  if (need.tensorrt_version.empty() || need.compute_capability.empty()) {
    return plan + ": its sidecar lacks tensorrt.version or gpu.compute_capability, so it cannot be "
           "checked against this machine" + fix;
  }
  const auto built = version_numbers(need.tensorrt_version), here = version_numbers(tensorrt_version);
  if (need.version_compatible ? here < built : here != built) {
    return plan + " was built with TensorRT " + need.tensorrt_version +
           (need.version_compatible ? " (version-compatible: runs on that version or later)" : "") +
           " but this is TensorRT " + tensorrt_version + fix;
  }
  if (need.hardware_compatibility == "ampere+") {
    if (version_numbers(compute_capability) < std::vector<int>{8, 0}) {
      return plan + " was built for Ampere or newer GPUs (compute capability >= 8.0) but this GPU (" + gpu_name +
             ") has " + compute_capability + fix;
    }
    return "";
  }
  if (need.compute_capability != compute_capability) {
    return plan + " was built for compute capability " + need.compute_capability + " (" + need.gpu_name +
           ") but this GPU (" + gpu_name + ") has " + compute_capability + fix;
  }
  if (need.hardware_compatibility != "same-cc" && !need.gpu_name.empty() && need.gpu_name != gpu_name) {
    return plan + " was built on a " + need.gpu_name + " but this GPU is a " + gpu_name + fix;
  }
  return "";
}

#ifndef DNX_WITH_TENSORRT
std::unique_ptr<Backend> open_tensorrt(const std::string& path, const ModelInfo&, const PlanRequirements&) {
  throw Error(path + ": this dnx_runtime was built without TensorRT; rebuild with -DDNX_WITH_TENSORRT=ON "
              "on a machine with TensorRT and CUDA, or use the .onnx model");
}
#endif

// ---------------------------------------------------------------------------------------------
// Model
namespace {

// Read <plan>.json: the metadata string map plus where the plan may run.
ModelInfo read_sidecar(const std::string& path, PlanRequirements* need) {
  const std::string sidecar = path + ".json";
  std::ifstream in(sidecar);
  if (!in) throw Error(path + " has no sidecar " + sidecar + "; build it with `dnx build-engine`");
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& exc) {
    throw Error(sidecar + " is not a readable JSON sidecar (" + exc.what() + ")");
  }
  if (!doc.is_object()) throw Error(sidecar + " is not a JSON object");
  Metadata props;
  if (doc.contains("metadata") && doc["metadata"].is_object()) {
    for (const auto& [key, value] : doc["metadata"].items()) {
      props[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  auto text = [&](const char* section, const char* key) -> std::string {
    if (!doc.contains(section) || !doc[section].is_object() || !doc[section].contains(key)) return "";
    const json& v = doc[section][key];
    return v.is_string() ? v.get<std::string>() : v.dump();
  };
  need->tensorrt_version = text("tensorrt", "version");
  need->gpu_name = text("gpu", "name");
  need->compute_capability = text("gpu", "compute_capability");
  need->version_compatible = text("builder", "version_compatible") == "true";
  need->hardware_compatibility = text("builder", "hardware_compatibility");
  if (need->hardware_compatibility == "null") need->hardware_compatibility.clear();
  return parse_metadata(props, sidecar);
}

}  // namespace

Model::Model(std::string path, ModelInfo info, std::unique_ptr<Backend> backend)
    : path_(std::move(path)), info_(std::move(info)), backend_(std::move(backend)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::open(const std::string& path) {
  if (!is_file(path)) throw Error(path + ": no such file");
  const std::string ext = extension(path);
  ModelInfo info;
  std::unique_ptr<Backend> backend;
  if (ext == ".onnx") {
    backend = open_onnxruntime(path, &info);
  } else if (ext == ".plan" || ext == ".engine") {
    PlanRequirements need;
    info = read_sidecar(path, &need);
    backend = open_tensorrt(path, info, need);
  } else {
    throw Error(path + ": unknown model type '" + ext + "' (expected .onnx, or .plan/.engine for TensorRT)");
  }
  return Model(path, std::move(info), std::move(backend));
}

std::string Model::backend() const { return backend_->name(); }

void Model::check_input(const Tensor& batch) const {
  const std::vector<int64_t> want{info_.channels, info_.height, info_.width};
  const bool ok = batch.shape.size() == 4 && batch.shape[0] >= 1 &&
                  std::equal(want.begin(), want.end(), batch.shape.begin() + 1);
  if (!ok) {
    throw Error("input tensor has shape " + shape_str(batch.shape) + " but " + info_.model + " expects (N, " +
                std::to_string(info_.channels) + ", " + std::to_string(info_.height) + ", " +
                std::to_string(info_.width) + ") or (" + std::to_string(info_.channels) + ", " +
                std::to_string(info_.height) + ", " + std::to_string(info_.width) + ")");
  }
  if (batch.data.size() != batch.numel()) {
    throw Error("input tensor holds " + std::to_string(batch.data.size()) + " values but its shape " +
                shape_str(batch.shape) + " needs " + std::to_string(batch.numel()));
  }
}

BatchRange Model::batch_range() const {
  if (info_.batch > 0) return {1, info_.batch};
  return {backend_->min_batch(), backend_->max_batch()};
}

Tensor Model::run(const std::vector<Image>& images) const {
  const auto n = static_cast<int64_t>(images.size());
  const BatchRange range = batch_range();
  if (n < range.min || (range.max > 0 && n > range.max)) {
    const std::string accepted = std::to_string(range.min) + ".." + (range.max > 0 ? std::to_string(range.max) : "");
    throw Error(path_ + ": a batch of " + std::to_string(n) + " images is outside its batch range " + accepted +
                (info_.batch > 0 ? " (fixed batch dnx.batch = " + std::to_string(info_.batch) + ")" : "") +
                "; pass " + (n < range.min ? "more" : "fewer") + " images per call, or use infer() to split");
  }
  Tensor batch{{n, info_.channels, info_.height, info_.width}, {}};
  batch.data.reserve(batch.numel());
  for (int64_t i = 0; i < n; ++i) {
    try {
      const Tensor one = preprocess(images[static_cast<size_t>(i)]);
      batch.data.insert(batch.data.end(), one.data.begin(), one.data.end());
    } catch (const Error& exc) {
      throw Error("image " + std::to_string(i) + " of a batch of " + std::to_string(n) + ": " + exc.what());
    }
  }
  return infer(batch);  // n is within the range, so this is one backend call
}

std::vector<std::vector<Prediction>> Model::classify(const std::vector<Image>& images, int k) const {
  const Tensor logits = run(images);
  std::vector<std::vector<Prediction>> best;
  for (int64_t row = 0; row < logits.shape[0]; ++row) best.push_back(topk(logits, row, k));
  return best;
}

Tensor Model::infer(const Tensor& input) const {
  Tensor batch = input;
  if (batch.shape.size() == 3) batch.shape.insert(batch.shape.begin(), 1);
  check_input(batch);

  const int64_t n = batch.shape[0];
  const size_t sample = batch.numel() / static_cast<size_t>(n);
  // A fixed-batch model takes exactly `batch` samples (the last chunk is zero-padded); a TensorRT
  // profile takes at most its max.
  const int64_t fixed = info_.batch;
  const int64_t chunk = fixed > 0 ? fixed : (backend_->max_batch() > 0 ? backend_->max_batch() : n);

  Tensor out{{n, info_.num_classes}, {}};
  out.data.reserve(static_cast<size_t>(n * info_.num_classes));
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t count = std::min(chunk, n - start);
    const int64_t run_n = fixed > 0 ? fixed : count;
    Tensor part{{run_n, info_.channels, info_.height, info_.width}, {}};
    part.data.assign(static_cast<size_t>(run_n) * sample, 0.0f);
    std::copy_n(batch.data.begin() + static_cast<std::ptrdiff_t>(start * sample), count * sample,
                part.data.begin());
    Tensor result;
    try {
      result = backend_->run(part);
    } catch (const Error& exc) {
      throw Error(path_ + ": " + exc.what());
    }
    const std::vector<int64_t> expected{run_n, info_.num_classes};
    if (result.shape != expected || result.data.size() != result.numel()) {
      throw Error(path_ + ": " + backend_->name() + " returned shape " + shape_str(result.shape) +
                  " but the metadata promises " + shape_str(expected));
    }
    out.data.insert(out.data.end(), result.data.begin(), result.data.begin() + count * info_.num_classes);
  }
  return out;
}

Tensor Model::preprocess(const Image& image) const {
  if (info_.channels != 1 && info_.channels != 3) {
    throw Error(info_.model + " takes " + std::to_string(info_.channels) +
                " input channels; images give 1 (gray) or 3 (RGB): pass a preprocessed .npy tensor");
  }
  if (image.width < 1 || image.height < 1 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels) {
    throw Error((image.source.empty() ? std::string("image") : image.source) + ": malformed image (" +
                std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                std::to_string(image.channels) + " with " + std::to_string(image.pixels.size()) +
                " bytes); expected 1..4 channels and width * height * channels bytes");
  }
  // Colour conversion as PIL's Image.convert("L") / ("RGB"): ITU-R 601-2 luma in 16-bit fixed point,
  // alpha dropped, gray replicated.
  Image converted{image.width, image.height, static_cast<int>(info_.channels), {}, image.source};
  const size_t pixels = static_cast<size_t>(image.width) * image.height;
  converted.pixels.resize(pixels * converted.channels);
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* p = &image.pixels[i * image.channels];
    const bool colour = image.channels >= 3;
    if (info_.channels == 1) {
      converted.pixels[i] = colour ? static_cast<uint8_t>((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16)
                                   : p[0];
    } else {
      for (int c = 0; c < 3; ++c) converted.pixels[i * 3 + c] = colour ? p[c] : p[0];
    }
  }
  const Image sized = resize_image(converted, static_cast<int>(info_.width), static_cast<int>(info_.height));

  Tensor out{{1, info_.channels, info_.height, info_.width}, {}};
  const size_t plane = static_cast<size_t>(info_.height * info_.width);
  out.data.resize(plane * info_.channels);
  for (int64_t c = 0; c < info_.channels; ++c) {
    for (size_t i = 0; i < plane; ++i) {
      const float x = static_cast<float>(sized.pixels[i * info_.channels + c]) / 255.0f;
      out.data[c * plane + i] = (x - info_.mean[c]) / info_.std[c];
    }
  }
  return out;
}

std::vector<Prediction> Model::topk(const Tensor& logits, int64_t row, int k) const {
  if (logits.shape.size() != 2 || row < 0 || row >= logits.shape[0]) {
    throw Error("topk: row " + std::to_string(row) + " is outside the output of shape " + shape_str(logits.shape));
  }
  const int64_t classes = logits.shape[1];
  const float* scores = logits.data.data() + row * classes;
  std::vector<int64_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  const auto keep = static_cast<size_t>(std::clamp<int64_t>(k, 0, classes));
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  std::vector<Prediction> best;
  for (size_t i = 0; i < keep; ++i) {
    const int64_t idx = order[i];
    best.push_back({idx, scores[idx], idx < static_cast<int64_t>(info_.labels.size()) ? info_.labels[idx] : ""});
  }
  return best;
}

}  // namespace dnx
