// TensorRT backend: deserialise a .plan and run it with the TensorRT 10/11 name-based runtime API.
// Compiled only with -DDNX_WITH_TENSORRT=ON (needs TensorRT and the CUDA runtime).
//
// API used (all present in TensorRT 10.x and 11.x; none is on the 11.x removed list):
//   IRuntime:          createInferRuntime, deserializeCudaEngine(blob, size)
//     https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/classnvinfer1_1_1_i_runtime.html
//   ICudaEngine:       getNbIOTensors, getIOTensorName, getTensorIOMode, getTensorDataType, getTensorShape,
//                      getNbOptimizationProfiles, getProfileShape, createExecutionContext
//     https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/classnvinfer1_1_1_i_cuda_engine.html
//   IExecutionContext: setInputShape, getTensorShape, setTensorAddress, enqueueV3
//     https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/classnvinfer1_1_1_i_execution_context.html
//   enqueueV3 pattern: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-c-api-patterns.html
//   11.x removals:     https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-c-api-reference.html
//   getInferLib{Major,Minor,Patch}Version: "C++ APIs Added in 10.x",
//     https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-c-api-reference.html
// Objects are released with delete (destroy() is gone since 10.0); the runtime must outlive the engine.
// A --version-compatible plan embeds a lean runtime, which IRuntime::setEngineHostCodeAllowed(true)
// (TensorRT >= 8.6) must allow before deserializeCudaEngine; the sidecar's builder.version_compatible says so.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <mutex>

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include "internal.hpp"

namespace dnx {
namespace {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

// Keeps TensorRT's last error for our one-line message instead of printing it.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) last_error = msg;
  }
  std::string last_error;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
  void* reserve(size_t bytes) {
    if (bytes > size_) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = nullptr;
      size_ = 0;
      check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
      size_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

std::string runtime_version() {
  return std::to_string(getInferLibMajorVersion()) + "." + std::to_string(getInferLibMinorVersion()) + "." +
         std::to_string(getInferLibPatchVersion());
}

class TensorRtBackend : public Backend {
 public:
  TensorRtBackend(const std::string& path, const ModelInfo& info, const PlanRequirements& need)
      : input_(info.input_name), output_(info.output_name) {
    // Refuse before deserialising: a plan only runs on the TensorRT version and GPU it was built for.
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) throw Error(path + ": no usable CUDA GPU on this machine");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    const std::string capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const std::string why = plan_incompatibility(path, need, runtime_version(), prop.name, capability);
    if (!why.empty()) throw Error(why);

    std::ifstream in(path, std::ios::binary);
    const std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (blob.empty()) throw Error(path + ": empty or unreadable plan file");

    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT: createInferRuntime failed: " + logger_.last_error);
    if (need.version_compatible) runtime_->setEngineHostCodeAllowed(true);
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) throw Error(path + " could not be deserialised by TensorRT " + runtime_version() + ": " + logger_.last_error);

    bool has_in = false, has_out = false;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const std::string name = engine_->getIOTensorName(i);
      const auto mode = engine_->getTensorIOMode(name.c_str());
      has_in |= name == input_ && mode == nvinfer1::TensorIOMode::kINPUT;
      has_out |= name == output_ && mode == nvinfer1::TensorIOMode::kOUTPUT;
    }
    if (!has_in || !has_out) {
      throw Error(path + ": the engine has no input '" + input_ + "' and output '" + output_ + "' (dnx metadata names)");
    }
    for (const auto& name : {input_, output_}) {
      if (engine_->getTensorDataType(name.c_str()) != nvinfer1::DataType::kFLOAT) {
        throw Error(path + ": tensor '" + name + "' is not float32; dnx plans keep float32 I/O");
      }
    }
    // Largest batch: a static batch dimension, else the max of optimisation profile 0.
    const nvinfer1::Dims shape = engine_->getTensorShape(input_.c_str());
    if (shape.nbDims != 4) throw Error(path + ": input '" + input_ + "' is not 4-D (NCHW)");
    if (shape.d[0] > 0) {
      static_batch_ = shape.d[0];
    } else if (engine_->getNbOptimizationProfiles() > 0) {
      min_batch_ = engine_->getProfileShape(input_.c_str(), 0, nvinfer1::OptProfileSelector::kMIN).d[0];
      max_batch_ = engine_->getProfileShape(input_.c_str(), 0, nvinfer1::OptProfileSelector::kMAX).d[0];
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path + ": TensorRT could not create an execution context: " + logger_.last_error);
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~TensorRtBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }
  int64_t min_batch() const override { return static_batch_ > 0 ? 1 : std::max<int64_t>(min_batch_, 1); }
  int64_t max_batch() const override { return static_batch_ > 0 ? static_batch_ : max_batch_; }

  Tensor run(const Tensor& batch) const override {
    // One execution context, stream and pair of device buffers: concurrent runs take turns.
    std::lock_guard<std::mutex> lock(mutex_);
    // A static-batch engine gets exactly its batch: zero-pad and trim.
    const int64_t n = batch.shape.empty() ? 0 : batch.shape[0];
    if (batch.shape.size() != 4 || n <= 0 || (static_batch_ > 0 && n > static_batch_)) {
      throw Error("TensorRT: expected an NCHW batch of 1.." + std::to_string(max_batch() > 0 ? max_batch() : n) +
                  " images");
    }
    const int64_t run_n = static_batch_ > 0 ? static_batch_ : n;
    std::vector<float> host_in = batch.data;
    host_in.resize(batch.data.size() / static_cast<size_t>(n) * static_cast<size_t>(run_n), 0.0f);

    nvinfer1::Dims in_shape{};
    in_shape.nbDims = 4;
    for (int i = 0; i < 4; ++i) in_shape.d[i] = i == 0 ? run_n : batch.shape[i];
    if (!context_->setInputShape(input_.c_str(), in_shape)) {
      throw Error("TensorRT rejected batch " + std::to_string(run_n) + " (outside the plan's optimisation profile, max " +
                  std::to_string(max_batch()) + "): " + logger_.last_error);
    }
    const nvinfer1::Dims out_dims = context_->getTensorShape(output_.c_str());
    if (out_dims.nbDims != 2 || out_dims.d[0] != run_n) throw Error("TensorRT: unexpected output shape for '" + output_ + "'");
    const int64_t classes = out_dims.d[1];

    void* d_in = in_buf_.reserve(host_in.size() * sizeof(float));
    void* d_out = out_buf_.reserve(static_cast<size_t>(run_n * classes) * sizeof(float));
    std::vector<float> host_out(static_cast<size_t>(run_n * classes));
    check_cuda(cudaMemcpyAsync(d_in, host_in.data(), host_in.size() * sizeof(float), cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (input)");
    if (!context_->setTensorAddress(input_.c_str(), d_in) || !context_->setTensorAddress(output_.c_str(), d_out)) {
      throw Error("TensorRT: setTensorAddress failed: " + logger_.last_error);
    }
    if (!context_->enqueueV3(stream_)) throw Error("TensorRT: enqueueV3 failed: " + logger_.last_error);
    check_cuda(cudaMemcpyAsync(host_out.data(), d_out, host_out.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync (output)");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");

    host_out.resize(static_cast<size_t>(n * classes));
    return Tensor{{n, classes}, std::move(host_out)};
  }

 private:
  // Logger first: it outlives every TensorRT object below. What run() changes is mutable and guarded
  // by mutex_.
  mutable Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  mutable DeviceBuffer in_buf_, out_buf_;
  mutable std::mutex mutex_;
  std::string input_, output_;
  int64_t static_batch_ = 0, min_batch_ = 0, max_batch_ = 0;
};

}  // namespace

std::unique_ptr<Backend> open_tensorrt(const std::string& path, const ModelInfo& info, const PlanRequirements& need) {
  return std::make_unique<TensorRtBackend>(path, info, need);
}

}  // namespace dnx
