// LossScaler: dynamic loss scaling for float16 training (LibTorch has no GradScaler).
//
// Note [Dynamic loss scaling]
// float16 gradients underflow to zero below ~6e-8, so the loss is multiplied by a large scale
// before backward and the parameters' gradients are divided by it again before the optimizer
// step. When the scale is too large some gradient overflows to inf/NaN: that step is skipped
// and the scale multiplied by backoff_factor; after growth_interval clean steps in a row it is
// multiplied by growth_factor. Defaults and rules are those of torch.amp.GradScaler, and the
// unscale-and-check and the update are the same ATen kernels (_amp_foreach_non_finite_check_and_
// unscale_, _amp_update_scale_).
// The state (scale, growth tracker, skipped steps) lives on the model's device as 0-dim tensors
// that those kernels update, and the overflow flag stays there too: the Trainer hands the scale
// to Policy::forward_backward as a GradScale (Note [A scale the host never reads]) and gives the
// flag to an optimizer that can skip its own step on the device (SkipsNonFiniteSteps: FusedAdam),
// so a float16 step never waits for the GPU, like GradScaler with Adam(fused=True). Any other
// optimizer is stepped after the host reads the flag: one wait per step, as GradScaler waits with
// a non-fused optimizer. Reading scale() or skipped_steps() waits as well (checkpoints, tests).
// Under Distributed, gradients are all-reduced before they are unscaled, so an inf on one rank
// reaches every rank: all ranks skip the same steps without exchanging anything more.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/policy/grad_scale.hpp"
#include "parallax/train/tensor_groups.hpp"

namespace parallax {
namespace detail {

/// `found_inf` as the kernels want it on `device`: 1.0 where it is nonzero, else 0.0 (the fused
/// optimizer kernels skip only on exactly 1.0).
inline torch::Tensor overflow_flag(const torch::Tensor& found_inf, const torch::Device& device) {
  return found_inf.ne(0).to(device, torch::kFloat, /*non_blocking=*/device.is_cuda());
}

}  // namespace detail

struct LossScalingOptions {
  TORCH_ARG(double, init_scale) = 65536.0;
  TORCH_ARG(double, growth_factor) = 2.0;
  TORCH_ARG(double, backoff_factor) = 0.5;
  TORCH_ARG(int64_t, growth_interval) = 2000;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalingOptions options = {}) : options_(options) {
    detail::require(options.init_scale() > 0 && options.init_scale() <= kLargestScale,
                    "loss scaling: init_scale must be positive and at most ", kLargestScale,
                    " (float32), got ", options.init_scale());
    detail::require(options.growth_factor() > 1, "loss scaling: growth_factor must be > 1, got ",
                    options.growth_factor());
    detail::require(options.backoff_factor() > 0 && options.backoff_factor() < 1,
                    "loss scaling: backoff_factor must be in (0, 1), got ",
                    options.backoff_factor());
    detail::require(options.growth_interval() >= 1 &&
                        options.growth_interval() <= std::numeric_limits<int32_t>::max(),
                    "loss scaling: growth_interval must be in [1, 2^31), got ",
                    options.growth_interval());
    restore(options.init_scale(), 0, 0);
  }

  /// Moves the state to `device`, where the gradients are (the Trainer: the master model's);
  /// before any grad_scale() is taken, which would go on holding the old tensor.
  void to(const torch::Device& device) {
    scale_ = scale_.to(device);
    growth_tracker_ = growth_tracker_.to(device);
    skipped_ = skipped_.to(device);
  }
  torch::Device device() const { return scale_.device(); }

  /// The factor the loss is multiplied by before backward, read on the device.
  GradScale grad_scale() const { return GradScale(scale_); }
  /// The scale, read on the host (waits for the device).
  double scale() const { return scale_.item<double>(); }
  /// Steps skipped so far because a gradient was inf or NaN (waits for the device).
  int64_t skipped_steps() const { return static_cast<int64_t>(skipped_.item<double>()); }
  /// Clean steps since the scale last changed (GradScaler's growth tracker; waits).
  int64_t growth_tracker() const { return growth_tracker_.item<int64_t>(); }
  const LossScalingOptions& options() const { return options_; }

  /// Divides every defined gradient of `parameters` by the scale in place. Returns the overflow
  /// flag: a 0-dim float tensor on device(), nonzero when any gradient holds an inf or NaN (the
  /// optimizer step must then be skipped). Nothing is read on the host.
  torch::Tensor unscale(const std::vector<torch::Tensor>& parameters) const {
    std::vector<torch::Tensor> defined;
    for (const auto& parameter : parameters) {
      const auto& grad = parameter.grad();
      if (!grad.defined()) continue;
      detail::require(!grad.is_sparse(), "loss scaling does not support sparse gradients");
      defined.push_back(grad);
    }
    // GradScaler's inverse: computed in double, used in float.
    const auto inverse = scale_.to(torch::kDouble).reciprocal().to(torch::kFloat);
    const auto found_inf = torch::zeros({}, scale_.options());
    // One flag per device; the kernel takes one list per device and dtype. Every group is
    // unscaled, also after an overflow.
    std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> flags;  // device: flag, inverse
    for (auto& [key, grads] : detail::by_device_and_dtype(defined)) {
      const torch::Device device = grads[0].device();
      auto [slot, fresh] = flags.try_emplace(device.str());
      if (fresh)
        slot->second = device == scale_.device()
                           ? std::pair(found_inf, inverse)
                           : std::pair(torch::zeros({}, scale_.options().device(device)),
                                       inverse.to(device, /*non_blocking=*/device.is_cuda()));
      at::_amp_foreach_non_finite_check_and_unscale_(grads, slot->second.first,
                                                     slot->second.second);
    }
    for (const auto& [name, flag] : flags)
      if (!flag.first.is_same(found_inf))
        found_inf.copy_(torch::maximum(found_inf, flag.first.to(found_inf.device())));
    return found_inf;
  }

  /// Adjusts the scale after a step, on the device: backs off when `found_inf` is set (and
  /// counts the skipped step), grows after growth_interval clean steps in a row.
  void update(const torch::Tensor& found_inf) {
    const auto flag = detail::overflow_flag(found_inf, scale_.device());
    at::_amp_update_scale_(scale_, growth_tracker_, flag, options_.growth_factor(),
                           options_.backoff_factor(), options_.growth_interval());
    skipped_.add_(flag);
  }

  /// Restores the state saved with a checkpoint, in place (a GradScale taken before sees it).
  void restore(double scale, int64_t growth_tracker, int64_t skipped) {
    detail::require(scale > 0 && scale <= kLargestScale, "loss scaling: the saved scale ", scale,
                    " is not in (0, ", kLargestScale, "]");
    detail::require(growth_tracker >= 0 && skipped >= 0, "loss scaling: the saved growth tracker ",
                    growth_tracker, " or skipped-step count ", skipped, " is negative");
    // Saved under a longer growth_interval: the next clean step grows the scale.
    growth_tracker = std::min(growth_tracker, options_.growth_interval() - 1);
    if (!scale_.defined()) {
      scale_ = torch::empty({}, torch::kFloat);
      growth_tracker_ = torch::empty({}, torch::kInt);
      skipped_ = torch::empty({}, torch::kDouble);
    }
    scale_.fill_(scale);
    growth_tracker_.fill_(growth_tracker);
    skipped_.fill_(static_cast<double>(skipped));
  }

  // A copy has state of its own (the tensors are cloned, not shared).
  LossScaler(const LossScaler& other)
      : options_(other.options_),
        scale_(other.scale_.clone()),
        growth_tracker_(other.growth_tracker_.clone()),
        skipped_(other.skipped_.clone()) {}
  LossScaler& operator=(const LossScaler& other) {
    if (this != &other) *this = LossScaler(other);
    return *this;
  }
  LossScaler(LossScaler&&) = default;
  LossScaler& operator=(LossScaler&&) = default;
  ~LossScaler() = default;

 private:
  static constexpr double kLargestScale = std::numeric_limits<float>::max();

  LossScalingOptions options_;
  torch::Tensor scale_;           // float32, what the loss is multiplied by
  torch::Tensor growth_tracker_;  // int32, as the update kernel wants it
  torch::Tensor skipped_;         // float64 count of skipped steps
};

/// An optimizer that can skip its own step on the device, so that the Trainer need not read the
/// overflow flag on the host (Python's optimizers with _step_supports_amp_scaling, such as
/// Adam(fused=True)). FusedAdam is one.
class SkipsNonFiniteSteps {
 public:
  virtual ~SkipsNonFiniteSteps() = default;
  /// step(), except that parameters and optimizer state stay as they were when the 0-dim flag
  /// `found_inf` is nonzero.
  virtual void step_unless(const torch::Tensor& found_inf) = 0;
};

namespace detail {

/// Steps `optimizer` unless `found_inf` is set: on the device when the optimizer can skip there,
/// else after reading the flag. False when it is known that the parameters did not change.
inline bool step_unless(torch::optim::Optimizer& optimizer, const torch::Tensor& found_inf) {
  if (auto* skipping = dynamic_cast<SkipsNonFiniteSteps*>(&optimizer)) {
    skipping->step_unless(found_inf);
    return true;
  }
  if (found_inf.item<float>() != 0.0f) return false;
  optimizer.step();
  return true;
}

}  // namespace detail

}  // namespace parallax
