// The one preprocessing every image path shares (folder, packed cache, a served upload):
// uint8 CHW RGB -> float, scaled to 0..1 and normalised per channel (ImageNet statistics by
// default, like torchvision's transforms.Normalize).
#pragma once

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

/// uint8 [C, H, W] -> normalised float [C, H, W].
inline torch::Tensor normalize_image(const torch::Tensor& pixels, const ImageOptions& options) {
  detail::require(pixels.dim() == 3 && pixels.scalar_type() == torch::kUInt8,
                  "normalize_image expects uint8 [C, H, W], got ", pixels.sizes());
  const auto channels = pixels.size(0);
  detail::require(static_cast<int64_t>(options.mean().size()) == channels &&
                      static_cast<int64_t>(options.std().size()) == channels,
                  "image has ", channels, " channels but mean/std have ", options.mean().size(),
                  "/", options.std().size());
  const auto mean = torch::tensor(options.mean(), torch::kFloat).view({channels, 1, 1});
  const auto std = torch::tensor(options.std(), torch::kFloat).view({channels, 1, 1});
  return (pixels.to(torch::kFloat).div(255.0) - mean) / std;
}

}  // namespace parallax
