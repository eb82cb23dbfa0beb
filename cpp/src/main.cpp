// dnx-infer: classify images or preprocessed .npy tensors with a densenet-deploy artifact.
//
//   dnx-infer MODEL INPUT... [--topk K] [--json]
//
// Exit codes (as the `dnx` CLI): 0 success, 2 bad usage or bad input (one line `error: ...` on stderr),
// 1 any other failure (one line `error: internal error: ...`). Nothing is printed on stdout unless every
// input succeeded; the usage text only on --help.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "dnx/runtime.hpp"

namespace {

const char* const kUsage =
    "usage: dnx-infer MODEL INPUT... [--topk K] [--json]\n"
    "  MODEL   model.onnx (ONNX Runtime) or model.plan with model.plan.json (TensorRT builds)\n"
    "  INPUT   an image (PNG, JPEG, PPM/PGM, BMP), resized and normalised from the model's metadata,\n"
    "          or a preprocessed float32 .npy tensor of shape (N, C, H, W) or (C, H, W)\n"
    "  --topk K  classes to report per input (default 5)\n"
    "  --json    one JSON object on stdout: {model, artifact, backend, results: [{input, row, topk, logits}]}\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  int topk = 5;
  bool json = false;
};

Options parse_args(int argc, char** argv) {
  Options opts;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (arg.rfind("--topk=", 0) == 0) {
      value = arg.substr(7);
      arg = "--topk";
      has_value = true;
    }
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--json") {
      opts.json = true;
    } else if (arg == "--topk") {
      if (!has_value) {
        if (i + 1 >= argc) throw UsageError("--topk needs a number");
        value = argv[++i];
      }
      char* end = nullptr;
      const long k = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || k < 1 || k > 1000000) {
        throw UsageError("--topk must be a positive integer, got '" + value + "'");
      }
      opts.topk = static_cast<int>(k);
    } else if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      throw UsageError("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 2) throw UsageError("need a MODEL and at least one INPUT");
  opts.model = positional[0];
  opts.inputs.assign(positional.begin() + 1, positional.end());
  return opts;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

int run(const Options& opts) {
  dnx::Model model = dnx::Model::open(opts.model);
  nlohmann::json results = nlohmann::json::array();
  for (const auto& input : opts.inputs) {
    const dnx::Tensor batch =
        ends_with(input, ".npy") ? dnx::load_npy(input) : model.preprocess(dnx::load_image(input));
    const dnx::Tensor logits = model.infer(batch);
    const int64_t classes = logits.shape[1];
    for (int64_t row = 0; row < logits.shape[0]; ++row) {
      nlohmann::json top = nlohmann::json::array();
      for (const auto& p : model.topk(logits, row, opts.topk)) {
        top.push_back({{"index", p.index}, {"label", p.label}, {"score", p.score}});
      }
      const auto first = logits.data.begin() + row * classes;
      results.push_back({{"input", input},
                         {"row", row},
                         {"topk", top},
                         {"logits", std::vector<float>(first, first + classes)}});
    }
  }

  if (opts.json) {
    nlohmann::json doc = {{"model", model.info().model},
                          {"artifact", model.path()},
                          {"backend", model.backend()},
                          {"precision", model.info().precision},
                          {"results", results}};
    // Invalid UTF-8 (e.g. in a file name) is replaced rather than aborting the output.
    std::cout << doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << model.info().model << " (" << model.backend() << ", " << model.info().precision << ")\n";
  for (const auto& r : results) {
    std::cout << r["input"].get<std::string>();
    if (r["row"].get<int64_t>() > 0 || ends_with(r["input"].get<std::string>(), ".npy")) {
      std::cout << "[" << r["row"].get<int64_t>() << "]";
    }
    std::cout << ":";
    for (const auto& p : r["topk"]) {
      std::cout << "  " << p["index"].get<int64_t>();
      if (!p["label"].get<std::string>().empty()) std::cout << " (" << p["label"].get<std::string>() << ")";
      std::cout << " " << std::fixed << std::setprecision(4) << p["score"].get<float>();
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& exc) {
    std::cerr << "error: " << one_line(exc.what()) << " (see 'dnx-infer --help')\n";
    return 2;
  } catch (const dnx::Error& exc) {
    std::cerr << "error: " << one_line(exc.what()) << "\n";
    return 2;
  } catch (const std::exception& exc) {
    std::cerr << "error: internal error: " << one_line(exc.what()) << "\n";
    return 1;
  }
}
