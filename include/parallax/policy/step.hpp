// One forward/backward pass on one model copy, and the statistics a step reports.
#pragma once

#include <functional>
#include <limits>
#include <sstream>
#include <string>

#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/error.hpp"
#include "parallax/policy/grad_scale.hpp"
#include "parallax/policy/model.hpp"

namespace parallax {

/// `loss(output, target)` returning the mean loss over the batch (torch's default reduction).
using LossFunction = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

/// Sums over the samples of one or more steps. Tensors stay on the device that produced them,
/// so accumulating them does not synchronise with a GPU; read them with `.item()` when needed.
struct StepStats {
  torch::Tensor loss_sum;  // sum over samples of the loss (mean loss x samples), 0-dim double
  torch::Tensor correct;   // correct top-1 predictions, 0-dim int64; undefined when not scored
  int64_t samples = 0;

  StepStats& operator+=(const StepStats& other) {
    if (other.samples == 0) return *this;
    const auto device = loss_sum.defined() ? loss_sum.device() : other.loss_sum.device();
    auto add = [&](torch::Tensor& mine, const torch::Tensor& theirs) {
      if (!theirs.defined()) return;
      mine = mine.defined() ? mine + theirs.to(device) : theirs.to(device);
    };
    add(loss_sum, other.loss_sum);
    add(correct, other.correct);
    samples += other.samples;
    return *this;
  }

  double mean_loss() const {
    return samples > 0 ? loss_sum.item<double>() / static_cast<double>(samples)
                       : std::numeric_limits<double>::quiet_NaN();
  }
  /// Top-1 accuracy in 0..1, NaN where the task is not a classification.
  double accuracy() const {
    return samples > 0 && correct.defined()
               ? static_cast<double>(correct.item<int64_t>()) / static_cast<double>(samples)
               : std::numeric_limits<double>::quiet_NaN();
  }
};

namespace detail {

inline std::string shape_of(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << tensor.sizes();
  return out.str();
}

/// Calls the user's loss, turning shape errors into one clear line.
inline torch::Tensor checked_loss(const LossFunction& loss, const torch::Tensor& output,
                                  const torch::Tensor& target) {
  require(output.dim() >= 1 && output.size(0) == target.size(0), "model output has batch size ",
          output.dim() >= 1 ? output.size(0) : 0, " but target has ", target.size(0),
          " (output shape ", shape_of(output), ", target shape ", shape_of(target), ")");
  torch::Tensor value;
  try {
    value = loss(output, target);
  } catch (const c10::Error& error) {
    throw InputError(concat("parallax: loss function failed for output shape ", shape_of(output),
                            " and target shape ", shape_of(target), ": ",
                            first_line(error.what_without_backtrace())));
  }
  require(value.defined() && value.numel() == 1, "loss function must return a scalar, got shape ",
          value.defined() ? shape_of(value) : std::string("undefined"));
  return value.reshape({});
}

/// Correct top-1 predictions when output is [N, C] scores and target [N] class indices.
inline torch::Tensor correct_predictions(const torch::Tensor& output, const torch::Tensor& target) {
  if (output.dim() != 2 || target.dim() != 1 || !c10::isIntegralType(target.scalar_type(), false))
    return {};
  return output.argmax(1).eq(target).sum().to(torch::kLong);
}

/// Forward, loss and backward of `batch` on `model`, adding grad_scale x d(mean loss)/d(params)
/// to the parameters' .grad (autograd accumulates, like loss.backward()).
inline StepStats forward_backward(const Model& model, const Batch& batch, const LossFunction& loss,
                                  const GradScale& grad_scale) {
  const torch::Tensor output = model(batch.input);
  const torch::Tensor value = checked_loss(loss, output, batch.target);
  grad_scale.apply(value).backward();
  StepStats stats;
  stats.samples = batch.size();
  stats.loss_sum = value.detach().to(torch::kDouble) * static_cast<double>(stats.samples);
  stats.correct = correct_predictions(output.detach(), batch.target);
  return stats;
}

/// Loss statistics of `batch` without gradients (evaluation).
inline StepStats score(const torch::Tensor& output, const Batch& batch, const LossFunction& loss) {
  StepStats stats;
  stats.samples = batch.size();
  stats.loss_sum = checked_loss(loss, output, batch.target).detach().to(torch::kDouble) *
                   static_cast<double>(stats.samples);
  stats.correct = correct_predictions(output, batch.target);
  return stats;
}

}  // namespace detail
}  // namespace parallax
