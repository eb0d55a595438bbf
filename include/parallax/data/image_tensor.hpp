// The one preprocessing every image path shares (folder, packed cache, a served upload):
// uint8 CHW RGB -> float, scaled to 0..1 and normalised per channel (ImageNet statistics by
// default, like torchvision's transforms.Normalize).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/error.hpp"

namespace parallax {

struct ImageOptions {
  /// Images are resized to image_size x image_size.
  TORCH_ARG(int64_t, image_size) = 64;
  TORCH_ARG(std::vector<double>, mean) = std::vector<double>{0.485, 0.456, 0.406};
  TORCH_ARG(std::vector<double>, std) = std::vector<double>{0.229, 0.224, 0.225};
};

namespace detail {
/// One pass over the bytes of a CHW image, x * 1/(255 std) - mean/std per channel: the loader
/// runs this for every image, and building mean/std tensors and four elementwise ops each time
/// cost more than the arithmetic. The one definition of the normalisation for every path.
/// (`__restrict`: bytes may alias anything, and without it the loop is not vectorised.)
inline void normalize_into(const uint8_t* __restrict in, float* __restrict out, int64_t channels,
                           int64_t plane, const ImageOptions& options) {
  for (int64_t c = 0; c < channels; ++c) {
    const auto std = options.std()[static_cast<std::size_t>(c)];
    const auto scale = static_cast<float>(1.0 / (255.0 * std));
    const auto shift = static_cast<float>(-options.mean()[static_cast<std::size_t>(c)] / std);
    for (int64_t i = c * plane; i < (c + 1) * plane; ++i) out[i] = in[i] * scale + shift;
  }
}
}  // namespace detail

/// uint8 [C, H, W] -> normalised float [C, H, W].
inline torch::Tensor normalize_image(const torch::Tensor& pixels, const ImageOptions& options) {
  detail::require(pixels.dim() == 3 && pixels.scalar_type() == torch::kUInt8,
                  "normalize_image expects uint8 [C, H, W], got ", pixels.sizes());
  const auto channels = pixels.size(0);
  detail::require(static_cast<int64_t>(options.mean().size()) == channels &&
                      static_cast<int64_t>(options.std().size()) == channels,
                  "image has ", channels, " channels but mean/std have ", options.mean().size(),
                  "/", options.std().size());
  const torch::Tensor source = pixels.contiguous();
  torch::Tensor result = torch::empty(source.sizes(), torch::kFloat);
  detail::normalize_into(source.data_ptr<uint8_t>(), result.data_ptr<float>(), channels,
                         source.numel() / std::max<int64_t>(channels, 1), options);
  return result;
}

}  // namespace parallax
