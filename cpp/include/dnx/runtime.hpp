// dnx_runtime: load a densenet-deploy artifact (.onnx or TensorRT .plan) and classify images with it.
//
// The artifact describes itself (ONNX metadata_props `dnx.*`, or the plan's `<plan>.json` sidecar), so
// the caller never repeats the input size, normalisation or labels:
//
//   const auto model = dnx::Model::open("model.onnx");
//   std::vector<dnx::Image> images{dnx::load_image("cat.png"), dnx::load_image("dog.png")};
//   for (const auto& best : model.classify(images, 5))   // one batch of 2, best 5 per image
//     std::printf("%s %.3f\n", best[0].label.c_str(), best[0].score);
//
// Errors: every failure is a dnx::Error (a std::runtime_error) with a one-line message that names what
// it is about: the model file, the image file (Image::source) or the image's index in a batch.
//
// Thread safety: a Model does not change after open(). Its const member functions (info, batch_range,
// preprocess, infer, run, classify, topk) may be called on one Model from any number of threads at once,
// with the results of serial calls. ONNX Runtime's Session::Run is thread-safe, so ONNX models run
// concurrently; a TensorRT plan has one execution context, so its runs are serialised by a mutex (open
// one Model per thread to overlap them). open(), moving and destroying a Model must not overlap other
// calls on that Model. load_image and load_npy share no state.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dnx {

// One-line, user-facing error: bad input, unreadable or incompatible model, backend failure.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A dense float32 tensor, row-major (NCHW for images).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  size_t numel() const;  // product of shape
};

// A decoded 8-bit image, interleaved (HWC) with `channels` = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::string source;  // the file it came from (set by load_image), named in error messages
};

// How many images one run() call takes: min..max, max 0 = no upper bound.
struct BatchRange {
  int64_t min = 1, max = 0;
};

// What the artifact says about itself (the `dnx.*` metadata keys).
struct ModelInfo {
  std::string model;                  // dnx.model
  int64_t num_classes = 0;            // dnx.num_classes
  int64_t channels = 0, height = 0, width = 0;  // dnx.input_size = [C, H, W]
  std::vector<float> mean, std;       // dnx.mean / dnx.std, one per channel
  std::vector<std::string> labels;    // dnx.labels (may be empty)
  std::string input_name = "input";   // dnx.input_name
  std::string output_name = "logits"; // dnx.output_name
  std::string layout = "NCHW";        // dnx.layout
  int64_t batch = 0;                  // dnx.batch: 0 = dynamic, else the fixed batch size
  std::string precision = "fp32";     // dnx.precision
  bool softmax = false;               // dnx.softmax: outputs are probabilities, not logits
};

struct Prediction {
  int64_t index;
  float score;
  std::string label;  // empty when the model has no labels
};

class Backend;  // implementation detail (ONNX Runtime or TensorRT)

class Model {
 public:
  // Open an artifact; the backend follows the extension: .onnx -> ONNX Runtime, .plan/.engine ->
  // TensorRT (only in builds with DNX_WITH_TENSORRT).
  static Model open(const std::string& path);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  std::string backend() const;  // "onnxruntime" or "tensorrt"

  // Resize (bilinear, like PIL's Image.resize) to the model's H x W, convert to gray/RGB to match C,
  // scale to [0, 1] and normalise with mean/std: a {1, C, H, W} tensor.
  Tensor preprocess(const Image& image) const;

  // The batch sizes run() and classify() accept: 1..dnx.batch for a fixed-batch model (zero-padded to
  // dnx.batch), 1.. without bound for a dynamic-batch ONNX model, a TensorRT plan's profile range.
  BatchRange batch_range() const;

  // Preprocess N images and run them as one batch in one backend call: {N, num_classes} logits, row i
  // for images[i]. Throws when N is outside batch_range() or an image cannot be preprocessed (the
  // message names its index and source).
  Tensor run(const std::vector<Image>& images) const;

  // run() and then the k best classes of each image, best first: result[i] is for images[i].
  std::vector<std::vector<Prediction>> classify(const std::vector<Image>& images, int k = 1) const;

  // Run a {N, C, H, W} (or {C, H, W}) float32 batch of any N >= 1; returns {N, num_classes} logits.
  // Batches larger than a fixed-batch model or a TensorRT profile allows are split.
  Tensor infer(const Tensor& batch) const;

  // The k best classes of row `row` of a {N, num_classes} output, best first.
  std::vector<Prediction> topk(const Tensor& logits, int64_t row, int k) const;

 private:
  Model(std::string path, ModelInfo info, std::unique_ptr<Backend> backend);
  void check_input(const Tensor& batch) const;

  std::string path_;
  ModelInfo info_;
  std::unique_ptr<Backend> backend_;
};

// Decode a PNG / JPEG / PPM / PGM / BMP file (stb_image); 16-bit files keep their high byte (value >> 8),
// as densenet_deploy.data does.
Image load_image(const std::string& path);

// Read a little-endian float32 .npy file (C order) of shape (N, C, H, W) or (C, H, W). The header's
// shape is checked against the file's size before any memory is allocated for the values.
Tensor load_npy(const std::string& path);

}  // namespace dnx
