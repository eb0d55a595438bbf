// What an encoded image says about itself before any pixel is decoded: its dimensions (JPEG,
// PNG) and, for a JPEG, whether its data reaches the end-of-image marker and its EXIF
// orientation. Lets decode_image refuse a decompression bomb (a small file declaring a huge
// image) without allocating it, and a cut-off JPEG that libjpeg would silently grey-fill. Needs
// no image library.
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
  int orientation = 1;   // JPEG: the EXIF orientation tag (1: as stored; 2-8 flip or rotate)
};

namespace detail {

inline int64_t big_endian(const uint8_t* p, int bytes) {
  int64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | p[i];
  return value;
}

inline int64_t little_endian(const uint8_t* p, int bytes) {
  int64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

/// The orientation tag (0x0112) of IFD0 in an APP1 "Exif" segment's payload; 1 when absent or
/// unreadable. Every offset is checked against the segment.
inline int exif_orientation(const uint8_t* d, std::size_t n) {
  if (n < 14 || !std::equal(d, d + 6, "Exif\0")) return 1;
  const uint8_t* tiff = d + 6;
  const std::size_t size = n - 6;
  const bool little = tiff[0] == 'I' && tiff[1] == 'I';
  if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto read = [&](std::size_t at, int bytes) {
    return little ? little_endian(tiff + at, bytes) : big_endian(tiff + at, bytes);
  };
  const auto ifd = static_cast<std::size_t>(read(4, 4));
  if (ifd + 2 > size) return 1;
  const auto entries = static_cast<std::size_t>(read(ifd, 2));
  for (std::size_t e = 0; e < entries && ifd + 2 + 12 * (e + 1) <= size; ++e) {
    const std::size_t entry = ifd + 2 + 12 * e;
    if (read(entry, 2) == 0x0112 && read(entry + 2, 2) == 3)  // SHORT
      return static_cast<int>(read(entry + 8, 2));
  }
  return 1;
}

/// Walks a JPEG's segments by their lengths (so embedded thumbnails inside APPn segments are
/// skipped) and its entropy-coded scans (FF00 stuffing and RSTn markers inside) until EOI.
/// Data after EOI (e.g. the video of a "motion photo") is ignored.
/// The first frame header gives the dimensions, as libjpeg reads it (a later one, after the
/// scan, must not hide a huge first frame from the pixel limit).
inline ImageHeader read_jpeg_header(const uint8_t* d, std::size_t n) {
  ImageHeader header{"jpeg"};
  header.complete = false;
  bool framed = false;
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
    if (frame && length >= 7 && !framed) {
      header.height = big_endian(d + pos + 5, 2);
      header.width = big_endian(d + pos + 7, 2);
      framed = true;
    }
    if (marker == 0xE1 && header.orientation == 1)  // APP1: EXIF (or XMP, skipped inside)
      header.orientation = exif_orientation(d + pos + 4, length - 2);
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
