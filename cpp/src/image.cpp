// Image decoding (stb_image) and resizing (stb_image_resize) for dnx_runtime.
//
// The stb single-header libraries come from the system (Debian: libstb-dev, in /usr/include/stb);
// their implementations are compiled here, so no libstb.so is needed at run time.
#include <cstdio>

#include "internal.hpp"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNM
#define STBI_ONLY_BMP
#include <stb_image.h>

// stb_image_resize2.h (2023+) replaced stb_image_resize.h; take whichever the system has.
#if __has_include(<stb_image_resize2.h>)
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize2.h>
#define DNX_STBIR_VERSION 2
#else
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#define DNX_STBIR_VERSION 1
#endif

namespace dnx {

Image load_image(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error(path + ": no such file or not readable");
  int width = 0, height = 0, channels = 0;
  // desired_channels = 0: keep the file's own channels; Model::preprocess converts like PIL does.
  stbi_uc* pixels = stbi_load_from_file(file, &width, &height, &channels, 0);
  std::fclose(file);
  if (!pixels) {
    throw Error(path + " is not a readable image (" + stbi_failure_reason() + "); expected PNG, JPEG, PPM/PGM or BMP");
  }
  Image image{width, height, channels, {}, path};
  image.pixels.assign(pixels, pixels + static_cast<size_t>(width) * height * channels);
  stbi_image_free(pixels);
  return image;
}

// Triangle filter = PIL's BILINEAR: pixel-centre aligned, widened by the scale factor when shrinking
// (antialiased), computed in linear 8-bit space. Edges: stb clamps where PIL renormalises the clipped
// kernel; the two agree when enlarging and differ by at most rounding at the border when shrinking.
Image resize_image(const Image& image, int width, int height) {
  if (image.width == width && image.height == height) return image;
  Image out{width, height, image.channels, {}, image.source};
  out.pixels.resize(static_cast<size_t>(width) * height * image.channels);
#if DNX_STBIR_VERSION == 2
  const stbir_pixel_layout layout = image.channels == 1 ? STBIR_1CHANNEL
                                    : image.channels == 2 ? STBIR_2CHANNEL
                                    : image.channels == 3 ? STBIR_RGB : STBIR_4CHANNEL;
  const bool ok = stbir_resize(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width,
                               height, 0, layout, STBIR_TYPE_UINT8, STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE);
#else
  const bool ok = stbir_resize_uint8_generic(image.pixels.data(), image.width, image.height, 0, out.pixels.data(),
                                             width, height, 0, image.channels, STBIR_ALPHA_CHANNEL_NONE, 0,
                                             STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR,
                                             nullptr);
#endif
  if (!ok) throw Error("cannot resize a " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                       " image to " + std::to_string(width) + "x" + std::to_string(height));
  return out;
}

}  // namespace dnx
