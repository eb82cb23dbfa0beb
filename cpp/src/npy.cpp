// A reader for NumPy .npy files holding little-endian float32 arrays (format versions 1-3).
// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#include <cstring>
#include <fstream>
#include <regex>

#include "dnx/runtime.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "load_npy reads '<f4' data in place and needs a little-endian host"
#endif

namespace dnx {
namespace {

// The value text of `'key': value` in the header's Python dict literal, or "".
std::string dict_value(const std::string& header, const std::string& key) {
  const std::regex pattern("['\"]" + key + "['\"]\\s*:\\s*('[^']*'|\"[^\"]*\"|\\([^)]*\\)|\\w+)");
  std::smatch match;
  return std::regex_search(header, match, pattern) ? match[1].str() : "";
}

}  // namespace

Tensor load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": no such file or not readable");
  auto fail = [&](const std::string& why) { return Error(path + " is not a float32 .npy tensor: " + why); };

  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw fail("bad magic");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  if (major == 1) {
    if (!in.read(reinterpret_cast<char*>(len_bytes), 2)) throw fail("truncated header");
    header_len = len_bytes[0] | (len_bytes[1] << 8);
  } else if (major == 2 || major == 3) {
    if (!in.read(reinterpret_cast<char*>(len_bytes), 4)) throw fail("truncated header");
    header_len = len_bytes[0] | (len_bytes[1] << 8) | (len_bytes[2] << 16) | (uint32_t(len_bytes[3]) << 24);
  } else {
    throw fail("unknown format version " + std::to_string(major));
  }
  if (header_len > (1u << 20)) throw fail("header too long");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw fail("truncated header");

  const std::string descr = dict_value(header, "descr");
  if (descr != "'<f4'" && descr != "\"<f4\"") {
    throw fail("dtype " + (descr.empty() ? std::string("?") : descr) + " (convert with .astype(np.float32))");
  }
  if (dict_value(header, "fortran_order") != "False") throw fail("Fortran order (save a C-contiguous array)");
  const std::string shape_text = dict_value(header, "shape");
  if (shape_text.size() < 2) throw fail("no shape in header");

  Tensor tensor;
  const std::string dims = shape_text.substr(1, shape_text.size() - 2);
  const std::regex number("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
    // More than 15 digits cannot be a real dimension (and would overflow std::stoll).
    if (it->length() > 15) throw fail("dimension " + it->str() + " in header is too large");
    tensor.shape.push_back(std::stoll(it->str()));
  }
  if (tensor.shape.size() != 3 && tensor.shape.size() != 4) {
    throw Error(path + ": tensor has " + std::to_string(tensor.shape.size()) +
                " dimensions; expected (N, C, H, W) or (C, H, W)");
  }

  // The header is only a claim: check that the file holds the bytes its shape declares before
  // allocating them, so a small file cannot make us reserve gigabytes.
  const std::streamoff data_start = in.tellg();
  in.seekg(0, std::ios::end);
  const std::streamoff file_end = in.tellg();
  in.seekg(data_start);
  if (data_start < 0 || file_end < data_start || !in) throw fail("cannot determine the file size");
  const uint64_t available = static_cast<uint64_t>(file_end - data_start);
  uint64_t count = 1;
  bool fits = true;  // count * sizeof(float) <= available, computed without overflow
  for (const int64_t d : tensor.shape) {
    const uint64_t dim = static_cast<uint64_t>(d);
    if (dim == 0) {
      count = 0;
      fits = true;
      break;
    }
    if (fits && count > available / sizeof(float) / dim) fits = false;
    if (fits) count *= dim;
  }
  if (!fits) {
    std::string shape = "(";
    for (size_t i = 0; i < tensor.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(tensor.shape[i]);
    throw fail("file holds fewer values than its shape " + shape + ") needs (" + std::to_string(available) +
               " bytes of data after the header)");
  }
  if (count > (uint64_t{1} << 32)) throw fail("tensor too large");
  tensor.data.resize(static_cast<size_t>(count));
  if (!in.read(reinterpret_cast<char*>(tensor.data.data()), static_cast<std::streamsize>(count * sizeof(float)))) {
    throw fail("file holds fewer values than its shape needs");
  }
  if (tensor.shape.size() == 3) tensor.shape.insert(tensor.shape.begin(), 1);
  return tensor;
}

}  // namespace dnx
