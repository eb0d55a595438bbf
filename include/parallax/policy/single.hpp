// Single: one model on one device. The baseline every other policy is compared with.
#pragma once

#include <optional>

#include <torch/torch.h>

#include "parallax/policy/concept.hpp"
#include "parallax/policy/devices.hpp"

namespace parallax {

class Single {
 public:
  /// `device`: where to train; default CUDA:0 when available, else the CPU. A device given in
  /// TrainerOptions::devices takes precedence.
  explicit Single(std::optional<torch::Device> device = std::nullopt) : device_(device) {}

  void bind(const Model& model, const BindContext& context) {
    detail::require(context.devices.size() <= 1, "Single trains on one device, but ",
                    context.devices.size(), " were given (", device_list(context.devices), ")");
    if (!context.devices.empty()) device_ = context.devices.front();
    if (!device_) device_ = default_device();
    device_ = usable_device(*device_, "Single");
    model_ = model;
    model_.module->to(*device_);
  }

  torch::Device input_device() const { return device_.value_or(torch::kCPU); }
  Shard shard() const { return {}; }
  int64_t min_batch() const { return 1; }
  StepStats forward_backward(const Batch& batch, const LossFunction& loss,
                             const GradScale& grad_scale) {
    return detail::forward_backward(model_, batch, loss, grad_scale);
  }
  void on_parameters_changed() {}
  torch::Tensor forward(const torch::Tensor& input) {
    torch::NoGradGuard no_grad;
    return model_(input.to(input_device()));
  }
  StepStats reduce(const StepStats& stats) { return stats; }
  void synchronize() {}
  void set_training(bool on) { model_->train(on); }
  bool is_main() const { return true; }
  int64_t world_size() const { return 1; }
  std::string name() const { return "single"; }

 protected:
  /// The model being trained (after bind), for policies built on Single.
  const Model& model() const { return model_; }

 private:
  std::optional<torch::Device> device_;
  Model model_;
};

static_assert(Policy<Single>);

}  // namespace parallax
