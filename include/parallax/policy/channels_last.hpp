// with_channels_last: NHWC memory format for any Model, whatever the policy.
//
// Convolution kernels (cuDNN with tensor cores, oneDNN) prefer NHWC. The 4-d weights are
// converted once, in place, and the forward function converts each 4-d input; clone() keeps
// the format, so DataParallel's replicas inherit it, and gradient buckets read gradients by
// logical index (reshape), so any memory format reduces correctly.
#pragma once

#include <torch/torch.h>

#include "parallax/policy/model.hpp"

namespace parallax {

/// The same model with its 4-d parameters and inputs in channels-last memory format.
inline Model with_channels_last(Model model) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model->parameters())
    if (parameter.dim() == 4)
      parameter.set_data(parameter.data().contiguous(torch::MemoryFormat::ChannelsLast));
  auto inner = model.forward;
  model.forward = [inner](torch::nn::Module& module, const torch::Tensor& input) {
    return inner(module,
                 input.dim() == 4 ? input.contiguous(torch::MemoryFormat::ChannelsLast) : input);
  };
  return model;
}

}  // namespace parallax
