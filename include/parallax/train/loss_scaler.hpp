// LossScaler: dynamic loss scaling for float16 training (LibTorch has no GradScaler).
//
// Note [Dynamic loss scaling]
// float16 gradients underflow to zero below ~6e-8, so the loss is multiplied by a large scale
// before backward and the parameters' gradients are divided by it again before the optimizer
// step. When the scale is too large some gradient overflows to inf/NaN: that step is skipped
// and the scale multiplied by backoff_factor; after growth_interval clean steps in a row it is
// multiplied by growth_factor. Defaults and rules are those of torch.amp.GradScaler, and the
// unscale-and-check is the same ATen kernel (_amp_foreach_non_finite_check_and_unscale_).
// The scale lives on the host: the Trainer passes it to Policy::forward_backward as grad_scale,
// and whether to step needs one host read per step anyway (GradScaler reads found_inf too).
// Under Distributed, gradients are all-reduced before they are unscaled, so an inf on one rank
// reaches every rank: all ranks skip the same steps without exchanging anything more.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/train/tensor_groups.hpp"

namespace parallax {

struct LossScalingOptions {
  TORCH_ARG(double, init_scale) = 65536.0;
  TORCH_ARG(double, growth_factor) = 2.0;
  TORCH_ARG(double, backoff_factor) = 0.5;
  TORCH_ARG(int64_t, growth_interval) = 2000;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalingOptions options = {}) : options_(options) {
    detail::require(options.init_scale() > 0 && std::isfinite(options.init_scale()),
                    "loss scaling: init_scale must be positive and finite, got ",
                    options.init_scale());
    detail::require(options.growth_factor() > 1, "loss scaling: growth_factor must be > 1, got ",
                    options.growth_factor());
    detail::require(options.backoff_factor() > 0 && options.backoff_factor() < 1,
                    "loss scaling: backoff_factor must be in (0, 1), got ",
                    options.backoff_factor());
    detail::require(options.growth_interval() >= 1,
                    "loss scaling: growth_interval must be >= 1, got ", options.growth_interval());
    scale_ = options.init_scale();
  }

  /// The factor the loss is multiplied by before backward.
  double scale() const { return scale_; }
  /// Steps skipped so far because a gradient was inf or NaN.
  int64_t skipped_steps() const { return skipped_; }
  /// Clean steps since the scale last changed (GradScaler's growth tracker).
  int64_t growth_tracker() const { return growth_tracker_; }
  const LossScalingOptions& options() const { return options_; }

  /// Divides every defined gradient of `parameters` by scale() in place; false when any of
  /// them holds an inf or NaN (the optimizer step must then be skipped).
  bool unscale(const std::vector<torch::Tensor>& parameters) const {
    std::vector<torch::Tensor> defined;
    for (const auto& parameter : parameters) {
      const auto& grad = parameter.grad();
      if (!grad.defined()) continue;
      detail::require(!grad.is_sparse(), "loss scaling does not support sparse gradients");
      defined.push_back(grad);
    }
    // The kernel takes one list per device and dtype.
    auto groups = detail::by_device_and_dtype(defined);
    // Every group is unscaled (gradients read after a skipped step are true ones too), and all
    // kernels are queued before the host waits for the first flag.
    std::vector<torch::Tensor> found;
    for (auto& [key, grads] : groups) {
      const auto options = torch::TensorOptions().dtype(torch::kFloat).device(grads[0].device());
      found.push_back(torch::zeros({1}, options));
      const auto inverse = torch::full({1}, 1.0 / scale_, options);
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found.back(), inverse);
    }
    bool finite = true;
    for (const auto& found_inf : found) finite = found_inf.item<float>() == 0.0f && finite;
    return finite;
  }

  /// Adjusts the scale after a step: backs off when `finite` is false (and counts the skipped
  /// step), grows after growth_interval finite steps in a row.
  void update(bool finite) {
    if (!finite) {
      scale_ *= options_.backoff_factor();
      growth_tracker_ = 0;
      ++skipped_;
      return;
    }
    if (++growth_tracker_ == options_.growth_interval()) {
      if (std::isfinite(scale_ * options_.growth_factor())) scale_ *= options_.growth_factor();
      growth_tracker_ = 0;
    }
  }

  /// Restores the state saved with a checkpoint.
  void restore(double scale, int64_t growth_tracker, int64_t skipped) {
    scale_ = scale;
    growth_tracker_ = growth_tracker;
    skipped_ = skipped;
  }

 private:
  LossScalingOptions options_;
  double scale_ = 1.0;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace parallax
