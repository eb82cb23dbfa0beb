// classify: label image files with any dnx artifact, in batches, from several threads sharing one model.
//
//   classify MODEL IMAGE... [--batch N] [--threads T] [--logits]
//
// One line per image, in the order given: PATH <tab> INDEX <tab> LABEL <tab> SCORE, then with --logits
// a tab and the logits separated by spaces. Exit 0 on success; 2 with one `error: ...` line on stderr
// (nothing on stdout) for bad usage or input, 1 for anything else.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dnx/runtime.hpp>

namespace {

struct Options {
  std::string model;
  std::vector<std::string> images;
  long batch = 0;  // 0: the model's fixed batch, else 8
  long threads = 1;
  bool logits = false;
};

long positive(const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 1) {
    throw std::invalid_argument(std::string(flag) + " needs a positive integer, got '" + text + "'");
  }
  return value;
}

Options parse(int argc, char** argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--batch" || arg == "--threads") && i + 1 < argc) {
      (arg == "--batch" ? opts.batch : opts.threads) = positive(argv[i], argv[i + 1]);
      ++i;
    } else if (arg == "--logits") {
      opts.logits = true;
    } else if (arg.rfind("--", 0) == 0) {
      throw std::invalid_argument("unknown or incomplete option " + arg);
    } else if (opts.model.empty()) {
      opts.model = arg;
    } else {
      opts.images.push_back(arg);
    }
  }
  if (opts.images.empty()) throw std::invalid_argument("usage: classify MODEL IMAGE... [--batch N] [--threads T] [--logits]");
  return opts;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options opts = parse(argc, argv);
    const dnx::Model model = dnx::Model::open(opts.model);
    std::vector<dnx::Image> images;
    for (const auto& path : opts.images) images.push_back(dnx::load_image(path));

    const size_t batch = static_cast<size_t>(opts.batch > 0 ? opts.batch : model.info().batch > 0 ? model.info().batch : 8);
    const size_t batches = (images.size() + batch - 1) / batch;
    std::vector<dnx::Tensor> logits(batches);

    // Each thread takes the next batch and runs it on the one shared model: run() is const and
    // thread-safe. The first error stops the work and is reported once.
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&] {
      for (size_t b; (b = next++) < batches;) {
        try {
          const auto first = images.begin() + static_cast<std::ptrdiff_t>(b * batch);
          const auto last = images.begin() + static_cast<std::ptrdiff_t>(std::min(images.size(), (b + 1) * batch));
          logits[b] = model.run(std::vector<dnx::Image>(first, last));
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
          next = batches;
        }
      }
    };
    std::vector<std::thread> threads;
    for (long t = 0; t < opts.threads; ++t) threads.emplace_back(work);
    for (auto& thread : threads) thread.join();
    if (error) std::rethrow_exception(error);

    for (size_t i = 0; i < images.size(); ++i) {
      const dnx::Tensor& out = logits[i / batch];
      const auto row = static_cast<int64_t>(i % batch);
      const dnx::Prediction best = model.topk(out, row, 1).at(0);
      std::printf("%s\t%lld\t%s\t%.6f", opts.images[i].c_str(), static_cast<long long>(best.index), best.label.c_str(),
                  best.score);
      for (int64_t c = 0; opts.logits && c < out.shape[1]; ++c) {
        std::printf("%c%.9g", c == 0 ? '\t' : ' ', out.data[static_cast<size_t>(row * out.shape[1] + c)]);
      }
      std::printf("\n");
    }
    return 0;
  } catch (const dnx::Error& exc) {  // bad model or image: the message names it
    std::fprintf(stderr, "error: %s\n", exc.what());
    return 2;
  } catch (const std::invalid_argument& exc) {
    std::fprintf(stderr, "error: %s\n", exc.what());
    return 2;
  } catch (const std::exception& exc) {
    std::fprintf(stderr, "error: internal error: %s\n", exc.what());
    return 1;
  }
}
