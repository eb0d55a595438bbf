// PackedImages: images decoded once into one uint8 file and memory-mapped for training, so an
// epoch reads memory instead of decoding JPEGs.
//
// File layout (little-endian, as written by pack_images):
//   "PXPACK01" | u64 count | u64 channels | u64 height | u64 width | u64 classes
//   | classes x (u64 length, bytes) | count x i64 label | count x (channels*height*width) u8, CHW
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/data/image_tensor.hpp"
#include "parallax/error.hpp"
#include "parallax/train/atomic_file.hpp"

namespace parallax {

inline constexpr char packed_magic[8] = {'P', 'X', 'P', 'A', 'C', 'K', '0', '1'};

/// What pack_images reads: uint8 [C, H, W] pixels, a label and the class names.
template <class S>
concept PixelSource = requires(const S& source, std::size_t i) {
  { source.pixels(i) } -> std::convertible_to<torch::Tensor>;
  { source.label(i) } -> std::convertible_to<int64_t>;
  { source.path(i) } -> std::convertible_to<std::filesystem::path>;
  { source.classes() } -> std::convertible_to<std::vector<std::string>>;
};

struct PackReport {
  int64_t written = 0;
  std::vector<std::string> skipped;  // "path: reason", for files that could not be decoded
};

/// Which images of a source decode: their indices, and "path: reason" for the others.
struct ImageCheck {
  std::vector<int64_t> readable;
  std::vector<std::string> skipped;
};

/// Decodes every image of `source` on `threads` threads, handing each to `store(index, pixels)`
/// (called concurrently for different indices), and sorts them into readable and skipped; with
/// `strict` the first unreadable image is an InputError. `on_image` (if any) is called from the
/// decoding threads after each image, e.g. to tick a ProgressLine.
template <PixelSource S, class Store>
ImageCheck decode_images(const S& source, std::size_t count, int threads, bool strict,
                         Store&& store, const std::function<void()>& on_image = {}) {
  std::vector<std::string> errors(count);
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next++) < count;) {
      try {
        store(i, source.pixels(i));
      } catch (const std::exception& error) {
        errors[i] = source.path(i).string() + ": " + detail::quoted_message(error.what());
      }
      if (on_image) on_image();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  ImageCheck check;
  for (std::size_t i = 0; i < count; ++i) {
    if (errors[i].empty()) {
      check.readable.push_back(static_cast<int64_t>(i));
      continue;
    }
    detail::require(!strict, "cannot read ", errors[i]);
    check.skipped.push_back(std::move(errors[i]));
  }
  return check;
}

/// Decodes every image of `source` once (`threads` threads) to find those that cannot be read:
/// train on `Subset(source, check.readable)`. With `strict`, an unreadable image is an error.
template <PixelSource S>
ImageCheck check_images(const S& source, std::size_t count, int threads = 2, bool strict = false,
                        const std::function<void()>& on_image = {}) {
  return decode_images(
      source, count, threads, strict, [](std::size_t, const torch::Tensor&) {}, on_image);
}

/// Decodes every image of `source` with `threads` threads and writes them to `path` atomically.
/// Undecodable files are skipped and reported, or, with `strict`, fail the whole pack.
/// `on_image` as in check_images.
template <PixelSource S>
PackReport pack_images(const S& source, std::size_t count, const std::filesystem::path& path,
                       int threads = 2, bool strict = false,
                       const std::function<void()>& on_image = {}) {
  detail::require(count > 0, "nothing to pack into '", path.string(), "'");
  std::vector<int64_t> shape;
  int64_t image_bytes = 0;
  for (std::size_t i = 0; i < count && shape.empty(); ++i) try {
      const torch::Tensor first = source.pixels(i);
      shape = first.sizes().vec();
      image_bytes = first.numel();
    } catch (const std::exception&) {
      // an unreadable image: decode_images reports it below
    }
  detail::require(shape.empty() || shape.size() == 3, "pack_images expects [C, H, W] images, got ",
                  shape.size(), " dimensions");
  std::vector<uint8_t> pixels(count * static_cast<std::size_t>(image_bytes));
  const ImageCheck check = decode_images(
      source, count, threads, strict,
      [&](std::size_t i, torch::Tensor image) {
        image = image.contiguous();
        if (image.sizes().vec() != shape) throw std::runtime_error("unexpected image shape");
        std::memcpy(pixels.data() + i * image_bytes, image.data_ptr<uint8_t>(), image_bytes);
      },
      on_image);
  PackReport report;
  report.skipped = check.skipped;
  std::vector<int64_t> labels;
  std::vector<std::size_t> kept;
  for (const int64_t i : check.readable) {
    kept.push_back(static_cast<std::size_t>(i));
    labels.push_back(source.label(static_cast<std::size_t>(i)));
  }
  detail::require(!kept.empty(), "no image of '", path.string(), "' could be decoded");
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    auto u64 = [&](uint64_t v) { out.write(reinterpret_cast<const char*>(&v), sizeof v); };
    out.write(packed_magic, sizeof packed_magic);
    u64(kept.size());
    for (const auto d : shape) u64(static_cast<uint64_t>(d));
    const auto classes = source.classes();
    u64(classes.size());
    for (const auto& name : classes) {
      u64(name.size());
      out.write(name.data(), static_cast<std::streamsize>(name.size()));
    }
    out.write(reinterpret_cast<const char*>(labels.data()),
              static_cast<std::streamsize>(labels.size() * sizeof(int64_t)));
    for (const std::size_t i : kept)
      out.write(reinterpret_cast<const char*>(pixels.data() + i * image_bytes), image_bytes);
    out.close();
    if (!out) throw std::runtime_error("parallax: cannot write '" + temporary.string() + "'");
  });
  report.written = static_cast<int64_t>(kept.size());
  return report;
}

/// A memory-mapped pack written by pack_images: random access, safe from several threads.
class PackedImages : public torch::data::datasets::Dataset<PackedImages> {
 public:
  explicit PackedImages(const std::filesystem::path& path, ImageOptions options = {})
      : options_(std::move(options)), path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    detail::require(fd >= 0, "cannot open packed images '", path.string(), "'");
    struct stat info {};
    ::fstat(fd, &info);
    size_ = static_cast<std::size_t>(info.st_size);
    void* map = size_ > 0 ? ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    ::close(fd);
    detail::require(map != MAP_FAILED, "cannot map packed images '", path.string(), "'");
    base_ = static_cast<const uint8_t*>(map);
    parse();
  }
  PackedImages(const PackedImages&) = delete;
  PackedImages& operator=(const PackedImages&) = delete;
  ~PackedImages() override {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
  }

  torch::data::Example<> get(std::size_t index) override {
    return {normalize_image(pixels(index), options_), torch::tensor(label(index))};
  }
  std::optional<std::size_t> size() const override { return count_; }

  /// The normalised images `indices` as one float [n, C, H, W] batch, and their labels: what
  /// stacking get(i) gives, written in one pass (BatchReadable; the Loader uses it).
  Batch get_batch(const std::vector<int64_t>& indices, BatchMemory& memory) const {
    detail::require(static_cast<int64_t>(options_.mean().size()) == channels_ &&
                        static_cast<int64_t>(options_.std().size()) == channels_,
                    "packed images have ", channels_, " channels but mean/std have ",
                    options_.mean().size(), "/", options_.std().size());
    const auto n = static_cast<int64_t>(indices.size());
    Batch batch{memory.empty({n, channels_, height_, width_}, torch::kFloat),
                memory.empty({n}, torch::kLong)};
    const int64_t plane = height_ * width_, bytes = channels_ * plane;
    float* out = batch.input.data_ptr<float>();
    int64_t* labels = batch.target.data_ptr<int64_t>();
    for (int64_t k = 0; k < n; ++k) {
      const auto index = static_cast<std::size_t>(indices[static_cast<std::size_t>(k)]);
      detail::require(index < count_, "packed image index ", index, " out of range (", count_, ")");
      detail::normalize_into(pixels_ + index * bytes, out + k * bytes, channels_, plane, options_);
      labels[k] = label(index);
    }
    return batch;
  }

  torch::Tensor pixels(std::size_t index) const {
    detail::require(index < count_, "packed image index ", index, " out of range (", count_, ")");
    const auto bytes = static_cast<std::size_t>(channels_ * height_ * width_);
    auto* data = const_cast<uint8_t*>(pixels_ + index * bytes);
    return torch::from_blob(data, {channels_, height_, width_}, torch::kUInt8).clone();
  }
  int64_t label(std::size_t index) const {
    int64_t value;
    std::memcpy(&value, labels_ + index * sizeof(int64_t), sizeof value);
    return value;
  }
  const std::vector<std::string>& classes() const { return classes_; }
  int64_t image_size() const { return height_; }

 private:
  void parse() {
    std::size_t at = 0;
    auto need = [&](std::size_t bytes) {
      detail::require(at + bytes <= size_, "packed images '", path_.string(),
                      "' is truncated or not a parallax pack");
    };
    auto u64 = [&] {
      need(8);
      uint64_t v;
      std::memcpy(&v, base_ + at, 8);
      at += 8;
      return v;
    };
    need(sizeof packed_magic);
    detail::require(std::memcmp(base_, packed_magic, sizeof packed_magic) == 0, "'", path_.string(),
                    "' is not a parallax pack (bad magic)");
    at = sizeof packed_magic;
    count_ = u64();
    channels_ = static_cast<int64_t>(u64());
    height_ = static_cast<int64_t>(u64());
    width_ = static_cast<int64_t>(u64());
    const uint64_t classes = u64();
    detail::require(classes < (1u << 20) && channels_ > 0 && height_ > 0 && width_ > 0,
                    "packed images '", path_.string(), "' has an invalid header");
    for (uint64_t c = 0; c < classes; ++c) {
      const uint64_t length = u64();
      need(length);
      classes_.emplace_back(reinterpret_cast<const char*>(base_ + at), length);
      at += length;
    }
    need(count_ * sizeof(int64_t));
    labels_ = base_ + at;
    at += count_ * sizeof(int64_t);
    need(count_ * static_cast<std::size_t>(channels_ * height_ * width_));
    pixels_ = base_ + at;
  }

  ImageOptions options_;
  std::filesystem::path path_;
  const uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t count_ = 0;
  int64_t channels_ = 0, height_ = 0, width_ = 0;
  std::vector<std::string> classes_;
  const uint8_t* labels_ = nullptr;
  const uint8_t* pixels_ = nullptr;
};

}  // namespace parallax
