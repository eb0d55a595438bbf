// TrainerOptions: the fluent options struct of Trainer, in the style of torch::data's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/train/loss_scaler.hpp"

namespace parallax {

/// Sets the learning rate before each epoch: called as schedule(optimizer, epoch).
using LrSchedule = std::function<void(torch::optim::Optimizer&, int64_t)>;

struct TrainerOptions {
  TORCH_ARG(int64_t, epochs) = 1;
  /// Examples per optimizer step on each process: the global batch for Single and
  /// DataParallel (split across replicas), the per-rank batch for Distributed.
  TORCH_ARG(int64_t, batch_size) = 32;
  /// Batch size for validation/evaluate/predict; 0: batch_size.
  TORCH_ARG(int64_t, eval_batch_size) = 0;
  /// Seeds the epoch order and torch's generator (dropout, augmentation) at fit start.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, shuffle) = true;
  TORCH_ARG(bool, drop_last) = false;
  /// Clip the gradient norm to this value before each step; 0 disables. Clipping stays on the
  /// device (parallax::clip_grad_norm_, Note [Clipping without a sync]).
  TORCH_ARG(double, clip_grad_norm) = 0;
  /// Loader worker threads and the prefetch window, in batches.
  TORCH_ARG(int64_t, workers) = 2;
  TORCH_ARG(int64_t, prefetch) = 4;
  /// Devices the policy must use (empty: the policy's default).
  TORCH_ARG(std::vector<torch::Device>, devices) = {};
  TORCH_ARG(LrSchedule, lr_schedule) = nullptr;
  /// Dynamic loss scaling, for float16 autocast (see Note [Dynamic loss scaling]); unset: off.
  TORCH_ARG(std::optional<LossScalingOptions>, loss_scaling) = std::nullopt;
};

/// Sets the learning rate of every parameter group.
inline void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

/// Cosine annealing per epoch from `lr` towards 0 over `epochs` (torch's CosineAnnealingLR
/// with T_max = epochs, eta_min = 0, stepped once per epoch).
inline LrSchedule cosine_schedule(double lr, int64_t epochs) {
  return [lr, epochs](torch::optim::Optimizer& optimizer, int64_t epoch) {
    const double pi = 3.14159265358979323846;
    set_learning_rate(optimizer,
                      0.5 * lr *
                          (1 + std::cos(pi * static_cast<double>(epoch) /
                                        static_cast<double>(std::max<int64_t>(epochs, 1)))));
  };
}

/// The learning rate of the first parameter group.
inline double learning_rate(const torch::optim::Optimizer& optimizer) {
  return optimizer.param_groups().empty() ? 0.0
                                          : optimizer.param_groups().front().options().get_lr();
}

}  // namespace parallax
