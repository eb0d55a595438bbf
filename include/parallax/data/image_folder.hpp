// ImageFolder: a folder of class sub-folders of images, like torchvision's ImageFolder: the
// classes are the sorted sub-folder names, the examples every image file under them (sorted).
// Decoding uses OpenCV (configure with PARALLAX_WITH_OPENCV=ON).
#pragma once

#include "parallax/config.hpp"
#if !PARALLAX_HAS_OPENCV
#error \
    "parallax/data/image_folder.hpp needs OpenCV: configure parallax with PARALLAX_WITH_OPENCV=ON"
#endif

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "parallax/data/area_resize.hpp"
#include "parallax/data/image_header.hpp"
#include "parallax/data/image_tensor.hpp"
#include "parallax/data/jpeg_decode.hpp"
#include "parallax/error.hpp"

namespace parallax {

/// Decodes an encoded image (JPEG, PNG, ...) held in memory into uint8 [3, size, size] RGB
/// (area-resized). `name` (a path, an upload) names it in errors. Refuses an empty buffer, a
/// JPEG cut short (libjpeg would silently grey-fill the rest) and images over `max_pixels` —
/// for JPEG and PNG from the header, before any pixel is decoded (see image_header.hpp).
inline torch::Tensor decode_image(const uint8_t* data, std::size_t bytes, int64_t size,
                                  const std::string& name, int64_t max_pixels = 64 << 20) {
  detail::require(bytes > 0, "image '", name, "' is empty");
  auto check_pixels = [&](int64_t width, int64_t height) {
    detail::require(width * height <= max_pixels, "image '", name, "' is ", width, "x", height,
                    " pixels, over the limit of ", max_pixels);
  };
  // Note [Scaled JPEG decoding]: libjpeg can decode at 1/2, 1/4 or 1/8 of the size in the DCT
  // domain, several times faster than a full decode. When the result still has at least `size`
  // pixels on its short side, the area resize below sees nearly the same input, so the largest
  // such reduction is used. Every path (folder, pack, upload) goes through here alike.
  int read_mode = cv::IMREAD_COLOR;
  int denominator = 1;
  if (const auto header = read_image_header(data, bytes)) {
    detail::require(header->complete, "image '", name, "' is a truncated JPEG");
    check_pixels(header->width, header->height);
    const int64_t short_side = std::min(header->width, header->height);
    if (header->format == "jpeg") {
      for (const auto& [factor, mode] :
           {std::pair{8, cv::IMREAD_REDUCED_COLOR_8}, std::pair{4, cv::IMREAD_REDUCED_COLOR_4},
            std::pair{2, cv::IMREAD_REDUCED_COLOR_2}})
        if (denominator == 1 && short_side >= factor * size) denominator = factor, read_mode = mode;
#if PARALLAX_HAS_LIBJPEG
      // RGB straight from libjpeg (Note [Decoding JPEG directly]), shrunk by our own area
      // resize (Note [Area resizing]): the OpenCV path's pixels (within 1, tested) in half the
      // time. Enlarging (a source under `size`) and EXIF rotations are left to OpenCV.
      detail::DecodedRgb rgb;
      if (short_side >= size && header->orientation == 1 &&
          detail::decode_jpeg_rgb(data, bytes, denominator, header->width, header->height, rgb)) {
        auto chw = torch::empty({3, size, size}, torch::kUInt8);
        detail::area_resize(rgb.pixels.data(), rgb.height, rgb.width, 3, size, size,
                            chw.data_ptr<uint8_t>());
        return chw;
      }
#endif
    }
  }
  const cv::Mat encoded(1, static_cast<int>(bytes), CV_8UC1, const_cast<uint8_t*>(data));
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(encoded, read_mode);
  } catch (const cv::Exception& error) {
    throw InputError("cannot decode image '" + name + "': " + detail::first_line(error.what()));
  }
  detail::require(!bgr.empty(), "cannot decode image '", name, "'");
  check_pixels(bgr.cols, bgr.rows);
  // Resizing works per channel, so swapping channels after it (on fewer pixels) is the same.
  cv::Mat resized, rgb;
  cv::resize(bgr, resized, cv::Size(static_cast<int>(size), static_cast<int>(size)), 0, 0,
             cv::INTER_AREA);
  cv::cvtColor(resized, rgb, cv::COLOR_BGR2RGB);
  return torch::from_blob(rgb.data, {size, size, 3}, torch::kUInt8)
      .permute({2, 0, 1})
      .clone(at::MemoryFormat::Contiguous);  // CHW, always copied out of the Mat
}

/// Reads and decodes the file `path` (see decode_image). Throws InputError naming the file when
/// it cannot be read or decoded.
inline torch::Tensor load_image(const std::filesystem::path& path, int64_t size) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  detail::require(in.good(), "cannot read image '", path.string(), "'");
  // One read of the whole file (a stream iterator would copy it byte by byte).
  std::vector<char> bytes(static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0)));
  in.seekg(0);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  detail::require(in.good() || bytes.empty(), "cannot read image '", path.string(), "'");
  return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), size,
                      path.string());
}

class ImageFolder : public torch::data::datasets::Dataset<ImageFolder> {
 public:
  explicit ImageFolder(const std::filesystem::path& root, ImageOptions options = {})
      : options_(std::move(options)) {
    namespace fs = std::filesystem;
    detail::require(fs::is_directory(root), "image folder '", root.string(), "' does not exist");
    std::vector<fs::path> folders;
    for (const auto& entry : fs::directory_iterator(root))
      if (entry.is_directory()) folders.push_back(entry.path());
    std::sort(folders.begin(), folders.end());
    for (const auto& folder : folders) {
      std::vector<fs::path> images;
      for (const auto& entry : fs::recursive_directory_iterator(folder))
        if (entry.is_regular_file() && is_image(entry.path())) images.push_back(entry.path());
      std::sort(images.begin(), images.end());
      detail::require(!images.empty(), "class folder '", folder.string(), "' has no images");
      const auto label = static_cast<int64_t>(classes_.size());
      classes_.push_back(folder.filename().string());
      for (auto& image : images) files_.push_back({std::move(image), label});
    }
    detail::require(!classes_.empty(), "image folder '", root.string(),
                    "' has no class sub-folders");
    detail::require(!files_.empty(), "image folder '", root.string(), "' has no images");
  }

  torch::data::Example<> get(std::size_t index) override {
    return {normalize_image(pixels(index), options_), torch::tensor(label(index))};
  }
  std::optional<std::size_t> size() const override { return files_.size(); }

  /// The undecoded-to-float image: uint8 [3, size, size].
  torch::Tensor pixels(std::size_t index) const {
    return load_image(files_.at(index).path, options_.image_size());
  }
  int64_t label(std::size_t index) const { return files_.at(index).label; }
  const std::filesystem::path& path(std::size_t index) const { return files_.at(index).path; }
  const std::vector<std::string>& classes() const { return classes_; }
  const ImageOptions& options() const { return options_; }

  static bool is_image(const std::filesystem::path& path) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    for (const char* known :
         {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"})
      if (ext == known) return true;
    return false;
  }

 private:
  struct File {
    std::filesystem::path path;
    int64_t label;
  };
  ImageOptions options_;
  std::vector<std::string> classes_;
  std::vector<File> files_;
};

}  // namespace parallax
