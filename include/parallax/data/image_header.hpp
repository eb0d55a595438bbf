// What an encoded image says about itself before any pixel is decoded: its dimensions (JPEG,
// PNG) and, for a JPEG, whether its data reaches the end-of-image marker. Lets decode_image
// refuse a decompression bomb (a small file declaring a huge image) without allocating it, and
// a cut-off JPEG that libjpeg would silently grey-fill. Needs no image library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace parallax {

struct ImageHeader {
  std::string format;  // "jpeg" or "png"
  int64_t width = 0, height = 0;
  bool complete = true;  // JPEG: the scan data is followed by an end-of-image marker
};

namespace detail {

inline int64_t big_endian(const uint8_t* p, int bytes) {
  int64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | p[i];
  return value;
}

/// Walks a JPEG's segments by their lengths (so embedded thumbnails inside APPn segments are
/// skipped) and its entropy-coded scans (FF00 stuffing and RSTn markers inside) until EOI.
/// Data after EOI (e.g. the video of a "motion photo") is ignored.
inline ImageHeader read_jpeg_header(const uint8_t* d, std::size_t n) {
  ImageHeader header{"jpeg"};
  header.complete = false;
  std::size_t pos = 2;
  while (pos + 1 < n) {
    if (d[pos] != 0xFF) return header;  // not at a marker: corrupt
    const uint8_t marker = d[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xD9) {
      header.complete = true;
      return header;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (pos + 4 > n) return header;
    const auto length = static_cast<std::size_t>(big_endian(d + pos + 2, 2));
    if (length < 2 || pos + 2 + length > n) return header;
    const bool frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame && length >= 7) {
      header.height = big_endian(d + pos + 5, 2);
      header.width = big_endian(d + pos + 7, 2);
    }
    pos += 2 + length;
    if (marker == 0xDA)  // a scan: its entropy-coded data runs to the next real marker
      while (pos + 1 < n && !(d[pos] == 0xFF && d[pos + 1] != 0x00 && d[pos + 1] != 0xFF &&
                              !(d[pos + 1] >= 0xD0 && d[pos + 1] <= 0xD7)))
        ++pos;
  }
  return header;
}

}  // namespace detail

/// The header of a JPEG or PNG held in memory; nullopt for other formats (and for buffers too
/// short to tell).
inline std::optional<ImageHeader> read_image_header(const uint8_t* data, std::size_t bytes) {
  if (bytes >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return detail::read_jpeg_header(data, bytes);
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (bytes >= 24 && std::equal(png, png + 8, data) && std::equal(data + 12, data + 16, "IHDR"))
    return ImageHeader{"png", detail::big_endian(data + 16, 4), detail::big_endian(data + 20, 4)};
  return std::nullopt;
}

}  // namespace parallax
