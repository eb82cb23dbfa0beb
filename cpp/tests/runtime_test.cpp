// Unit checks of dnx_runtime internals that need no model: metadata parsing and the TensorRT plan
// compatibility rule (so the refusal logic is tested on machines without a GPU). Exit 0 = all passed.
#include <cstdio>
#include <functional>

#include "../src/internal.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

// True when fn throws a dnx::Error whose message contains `needle`.
bool throws(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const dnx::Error& exc) {
    return std::string(exc.what()).find(needle) != std::string::npos;
  }
  return false;
}

}  // namespace

int main() {
  using dnx::Metadata;
  const Metadata good{{"dnx.model", "densenet_bc100_k12"}, {"dnx.num_classes", "10"},
                      {"dnx.input_size", "[3, 32, 32]"},   {"dnx.mean", "[0.49, 0.48, 0.44]"},
                      {"dnx.std", "[0.25, 0.24, 0.26]"},   {"dnx.labels", "[\"a\", \"b\"]"},
                      {"dnx.batch", "8"},                  {"dnx.softmax", "true"},
                      {"dnx.precision", "int8"},           {"other", "ignored"}};
  const dnx::ModelInfo info = dnx::parse_metadata(good, "m.onnx");
  check(info.model == "densenet_bc100_k12" && info.num_classes == 10, "model, num_classes");
  check(info.channels == 3 && info.height == 32 && info.width == 32, "input_size");
  check(info.mean.size() == 3 && info.std[2] == 0.26f, "mean/std");
  check(info.labels.size() == 2 && info.labels[1] == "b", "labels");
  check(info.batch == 8 && info.softmax && info.precision == "int8", "batch, softmax, precision");
  check(info.input_name == "input" && info.output_name == "logits", "default I/O names");

  auto with = [&](const std::string& key, const std::string& value) {
    Metadata m = good;
    m[key] = value;
    return m;
  };
  check(throws([&] { dnx::parse_metadata({}, "m.onnx"); }, "has no dnx metadata"), "missing metadata");
  check(throws([&] { dnx::parse_metadata(with("dnx.mean", "[0.5]"), "m.onnx"); }, "dnx.mean"), "mean length");
  check(throws([&] { dnx::parse_metadata(with("dnx.input_size", "[3, 32"), "m.onnx"); }, "not valid JSON"),
        "bad JSON");
  check(throws([&] { dnx::parse_metadata(with("dnx.layout", "NHWC"), "m.onnx"); }, "only NCHW"), "layout");
  check(throws([&] { dnx::parse_metadata(with("dnx.batch", "0"), "m.onnx"); }, "dnx.batch"), "batch");
  check(dnx::parse_metadata(with("dnx.batch", "null"), "m.onnx").batch == 0, "dynamic batch");

  const dnx::PlanRequirements need{"11.0.0.20", "NVIDIA H100 80GB HBM3", "9.0"};
  check(dnx::plan_incompatibility("m.plan", need, "11.0.0", "NVIDIA H100 80GB HBM3", "9.0").empty(), "plan ok");
  check(dnx::plan_incompatibility("m.plan", need, "11.1.0", "NVIDIA H100 80GB HBM3", "9.0").find("TensorRT 11.0.0.20") !=
            std::string::npos, "plan: TensorRT version");
  check(dnx::plan_incompatibility("m.plan", need, "11.0.0", "NVIDIA A100-SXM4-40GB", "8.0").find("compute capability 9.0") !=
            std::string::npos, "plan: compute capability");
  check(dnx::plan_incompatibility("m.plan", need, "11.0.0", "NVIDIA H200", "9.0").find("built on a NVIDIA H100") !=
            std::string::npos, "plan: GPU name");
  check(!dnx::plan_incompatibility("m.plan", {}, "11.0.0", "NVIDIA H100", "9.0").empty(), "plan: sidecar lacks keys");

  // The same rules as the Python runner: version-compatible plans run on later TensorRT versions,
  // hardware-compatible ones on other GPUs of the allowed capabilities.
  dnx::PlanRequirements portable{"10.9.0", "NVIDIA H100 80GB HBM3", "9.0", true, "ampere+"};
  check(dnx::plan_incompatibility("m.plan", portable, "10.10.0", "NVIDIA A100-SXM4-40GB", "8.0").empty(),
        "plan: version-compatible + ampere+ runs on a later TensorRT and an A100");
  check(!dnx::plan_incompatibility("m.plan", portable, "10.8.0", "NVIDIA H100 80GB HBM3", "9.0").empty(),
        "plan: version-compatible does not run on an older TensorRT");
  check(!dnx::plan_incompatibility("m.plan", portable, "10.9.0", "Tesla T4", "7.5").empty(),
        "plan: ampere+ refuses a Turing GPU");
  dnx::PlanRequirements same_cc{"11.0.0", "NVIDIA H100 80GB HBM3", "9.0", false, "same-cc"};
  check(dnx::plan_incompatibility("m.plan", same_cc, "11.0.0", "NVIDIA H200", "9.0").empty(),
        "plan: same-cc runs on another GPU of the same capability");
  check(!dnx::plan_incompatibility("m.plan", same_cc, "11.0.0", "NVIDIA A100-SXM4-40GB", "8.0").empty(),
        "plan: same-cc refuses another capability");

  if (failures == 0) std::printf("runtime_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
