// with_autocast: mixed precision for any Model, whatever the policy.
//
// Note [Autocast around forward only]
// Like torch.autocast in Python, autocast covers the forward pass and the loss is computed from
// float32 logits; backward then runs outside it (autograd replays each op in the dtype its
// forward used). The region is entered inside the Model's forward function rather than by the
// Trainer because autocast state is thread-local: DataParallel runs each replica's forward on
// its own thread, and only the forward function runs on all of them. The device type comes from
// the input, so one wrapped model serves CPU and CUDA replicas alike. bfloat16 needs no loss
// scaling; float16 does: train it with TrainerOptions::loss_scaling (train/loss_scaler.hpp).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/policy/model.hpp"

namespace parallax {

namespace detail {

/// Enters autocast for one device type on this thread and restores the previous state on exit.
class AutocastRegion {
 public:
  AutocastRegion(at::DeviceType device, at::ScalarType dtype)
      : device_(device),
        was_enabled_(at::autocast::is_autocast_enabled(device)),
        previous_dtype_(at::autocast::get_autocast_dtype(device)) {
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastRegion() {
    // Leaving the outermost region frees the casted weight copies cached during it.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, previous_dtype_);
  }
  AutocastRegion(const AutocastRegion&) = delete;
  AutocastRegion& operator=(const AutocastRegion&) = delete;

 private:
  at::DeviceType device_;
  bool was_enabled_;
  at::ScalarType previous_dtype_;
};

}  // namespace detail

/// The same model, whose forward runs under autocast to `dtype` (bfloat16 or float16) on the
/// input's device type and returns float32 outputs. See Note [Autocast around forward only].
inline Model with_autocast(Model model, at::ScalarType dtype = at::kBFloat16) {
  detail::require(dtype == at::kBFloat16 || dtype == at::kHalf,
                  "with_autocast supports bfloat16 and float16, got ", dtype);
  auto inner = model.forward;
  model.forward = [inner, dtype](torch::nn::Module& module, const torch::Tensor& input) {
    torch::Tensor output;
    {
      detail::AutocastRegion region(input.device().type(), dtype);
      output = inner(module, input);
    }
    return output.is_floating_point() ? output.to(torch::kFloat) : output;
  };
  return model;
}

}  // namespace parallax
