// JPEG decoding through libjpeg(-turbo) itself: RGB out, scaled down in the DCT domain.
//
// Note [Decoding JPEG directly]
// Debian's cv::imdecode reaches the same libjpeg-turbo with the same settings (bit-identical
// pixels, tested), but asks it for RGB and then swaps every pixel to BGR in a byte loop, which
// we would swap back: that and its generic codec dispatch were 40% of loading a 200x200 JPEG.
// Decoding here gives RGB at once. Whatever libjpeg reports — an error, or a warning about
// corrupt data — makes this return false and the caller decodes with OpenCV as before, which
// handles the rest (CMYK, other formats) and words the errors; so this path only ever takes the
// images it decodes cleanly. The caller also leaves to OpenCV what it does beyond decoding:
// EXIF orientation (image_header.hpp reads the tag). Built when CMake found libjpeg-turbo's
// headers (PARALLAX_HAS_LIBJPEG); including this brings jpeglib.h's global typedefs and macros
// (boolean, INT32, TRUE, GLOBAL, ...) into the including file.
#pragma once

#include "parallax/config.hpp"

#if PARALLAX_HAS_LIBJPEG
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h uses FILE and size_t without including their headers
#include <vector>

#include <jpeglib.h>

namespace parallax::detail {

struct DecodedRgb {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  // height x width x 3, rows contiguous
};

struct JpegErrorJump {
  jpeg_error_mgr manager;  // first: libjpeg hands back a pointer to it
  std::jmp_buf jump;
};

[[noreturn]] inline void jpeg_jump_back(j_common_ptr info) {
  std::longjmp(reinterpret_cast<JpegErrorJump*>(info->err)->jump, 1);
}

/// Decodes `data` at 1/denominator of its size (1, 2, 4 or 8) into `out`. False on anything
/// libjpeg reports, and when the image is not `width` x `height` (what the caller checked
/// against its pixel limit); `out` is then unspecified. See Note [Decoding JPEG directly].
// Only trivially destructible objects live in this frame: longjmp skips no destructor.
inline bool decode_jpeg_rgb(const uint8_t* data, std::size_t bytes, int denominator, int64_t width,
                            int64_t height, DecodedRgb& out) {
  jpeg_decompress_struct info;
  JpegErrorJump error;
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = jpeg_jump_back;
  error.manager.emit_message = [](j_common_ptr state, int level) {
    if (level < 0) jpeg_jump_back(state);  // a warning: the data is corrupt
  };
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(bytes));
  jpeg_read_header(&info, TRUE);
  if (info.image_width != width || info.image_height != height) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  info.out_color_space = JCS_RGB;
  info.scale_num = 1;
  info.scale_denom = static_cast<unsigned int>(denominator);
  jpeg_start_decompress(&info);
  try {
    out.height = info.output_height;
    out.width = info.output_width;
    out.pixels.resize(static_cast<std::size_t>(out.height * out.width * 3));
  } catch (...) {  // bad_alloc: release libjpeg's memory before passing it on
    jpeg_destroy_decompress(&info);
    throw;
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = out.pixels.data() + static_cast<std::size_t>(info.output_scanline) *
                                           static_cast<std::size_t>(out.width) * 3;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

}  // namespace parallax::detail
#endif
