// api_check DYNAMIC.onnx FIXED4.onnx IMAGE: checks of the public API that the classify example does not
// reach (batch ranges, refusals, errors naming the image index). Prints "api_check: all passed" or
// one FAIL line per failed check; exit 0 only when all passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <dnx/runtime.hpp>

static_assert(std::is_base_of_v<std::runtime_error, dnx::Error>, "dnx::Error is a std::runtime_error");

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// The message of the dnx::Error that fn throws, or "" when it throws none.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const dnx::Error& exc) {
    return exc.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: api_check DYNAMIC.onnx FIXED4.onnx IMAGE\n");
    return 2;
  }
  const dnx::Model dynamic = dnx::Model::open(argv[1]);
  const dnx::Model fixed = dnx::Model::open(argv[2]);
  const dnx::Image image = dnx::load_image(argv[3]);
  check(image.source == argv[3], "load_image records the file in Image::source");

  const dnx::BatchRange any = dynamic.batch_range(), four = fixed.batch_range();
  check(any.min == 1 && any.max == 0, "a dynamic-batch model takes any N >= 1");
  check(four.min == 1 && four.max == 4, "a dnx.batch = 4 model takes 1..4");

  const std::vector<dnx::Image> five(5, image);
  const std::string too_many = error_of([&] { fixed.run(five); });
  check(contains(too_many, std::string(argv[2]) + ": a batch of 5 images is outside its batch range 1..4"), too_many);
  const std::string none = error_of([&] { dynamic.run({}); });
  check(contains(none, "a batch of 0 images is outside its batch range 1.."), none);
  check(dynamic.run(five).shape == std::vector<int64_t>({5, dynamic.info().num_classes}), "run gives {N, classes}");

  dnx::Image broken = image;
  broken.pixels.resize(3);
  const std::string bad = error_of([&] { dynamic.run({image, broken}); });
  check(contains(bad, "image 1 of a batch of 2: " + std::string(argv[3]) + ": malformed image"), bad);

  // classify is run + topk, and a fixed-batch model (padded) agrees with the dynamic one to float error.
  const std::vector<dnx::Image> two{image, image};
  const dnx::Tensor logits = dynamic.run(two), padded = fixed.run(two);
  const auto best = dynamic.classify(two, 3);
  check(best.size() == 2 && best[1].size() == 3, "classify gives k predictions per image");
  for (size_t i = 0; i < best.size(); ++i) {
    const auto expected = dynamic.topk(logits, static_cast<int64_t>(i), 3);
    for (size_t j = 0; j < expected.size() && j < best[i].size(); ++j) {
      check(best[i][j].index == expected[j].index && best[i][j].score == expected[j].score, "classify == topk(run)");
    }
  }
  float diff = 0;
  for (size_t i = 0; i < logits.data.size() && i < padded.data.size(); ++i) {
    diff = std::max(diff, std::abs(logits.data[i] - padded.data[i]));
  }
  check(padded.shape == logits.shape && diff <= 1e-5f, "fixed-batch run trims the padding");

  if (failures == 0) std::printf("api_check: all passed\n");
  return failures == 0 ? 0 : 1;
}
