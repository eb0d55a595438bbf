// clip_grad_norm_: gradient clipping by total 2-norm that never waits for the device.
//
// Note [Clipping without a sync]
// LibTorch's torch::nn::utils::clip_grad_norm_ returns the norm as a double: it reads the norm
// back with .item(), so on a GPU the host waits at every step for all the work queued so far,
// and it launches a norm and a multiply per parameter. Python's version keeps the norm on the
// device and uses multi-tensor kernels; so does this one: one _foreach_norm per device and
// dtype, the total and the clip coefficient as device tensors, one _foreach_mul_ per group.
// The coefficient is clamped at 1, so gradients under the bound are multiplied by exactly one,
// as in Python (which also leaves non-finite norms to propagate, as here).
#pragma once

#include <optional>
#include <vector>

#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/train/tensor_groups.hpp"

namespace parallax {

/// Scales the gradients of `parameters` in place so that their total 2-norm is at most
/// `max_norm`; returns that norm, before clipping, as a 0-dim tensor on the first gradient's
/// device (zero when no parameter has a gradient).
inline torch::Tensor clip_grad_norm_(const std::vector<torch::Tensor>& parameters,
                                     double max_norm) {
  detail::require(max_norm > 0, "clip_grad_norm_: max_norm must be positive, got ", max_norm);
  std::vector<torch::Tensor> dense, sparse;  // no multi-tensor kernels for sparse: one by one
  std::optional<torch::Device> first;
  for (const auto& parameter : parameters) {
    const auto& grad = parameter.grad();
    if (!grad.defined()) continue;
    if (!first) first = grad.device();
    (grad.is_sparse() ? sparse : dense).push_back(grad);
  }
  if (!first) return torch::zeros({});
  auto groups = detail::by_device_and_dtype(dense);
  std::vector<torch::Tensor> norms;
  for (auto& [key, grads] : groups)
    for (auto& norm : at::_foreach_norm(grads, 2)) norms.push_back(norm.to(*first));
  for (const auto& grad : sparse) norms.push_back(grad.norm(2).to(*first));
  const auto total = at::linalg_vector_norm(torch::stack(norms), 2);
  const auto coefficient = torch::clamp(max_norm / (total + 1e-6), /*min=*/std::nullopt, 1.0);
  // In float and double groups in their own dtype, which the multi-tensor kernel's fast path
  // wants; half-precision gradients are multiplied by the full-precision coefficient.
  auto coefficient_for = [&](const torch::Tensor& grad) {
    const auto type = grad.scalar_type();
    const bool full = type == torch::kFloat || type == torch::kDouble;
    return coefficient.to(grad.device(), full ? type : coefficient.scalar_type());
  };
  for (auto& [key, grads] : groups) at::_foreach_mul_(grads, coefficient_for(grads[0]));
  for (auto& grad : sparse) grad.mul_(coefficient_for(grad));
  return total;
}

}  // namespace parallax
