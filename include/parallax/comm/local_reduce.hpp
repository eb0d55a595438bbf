// Gradient and parameter traffic between model copies inside one process (DataParallel).
// Cross-process traffic (c10d process groups) lives beside it in comm/.
#pragma once

#include <vector>

#include <torch/torch.h>

namespace parallax::comm {

/// master.grad += replica.grad for every parameter (the replica's gradient copied to the
/// master's device). Parameters without a gradient in the replica are skipped.
inline void accumulate_gradients(const std::vector<torch::Tensor>& master,
                                 const std::vector<torch::Tensor>& replica) {
  TORCH_CHECK(master.size() == replica.size(), "parallax: replica has ", replica.size(),
              " parameters, master has ", master.size());
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < master.size(); ++i) {
    const torch::Tensor& source = replica[i].grad();
    if (!source.defined()) continue;
    torch::Tensor& target = master[i].mutable_grad();
    const torch::Tensor moved = source.to(master[i].device(), /*non_blocking=*/true);
    if (target.defined()) {
      target.add_(moved);
    } else {
      target = moved.clone();
    }
  }
}

/// Copies `source` tensors into `target` tensors in place (parameters or buffers).
inline void copy_into(const std::vector<torch::Tensor>& target,
                      const std::vector<torch::Tensor>& source) {
  TORCH_CHECK(target.size() == source.size(), "parallax: cannot copy ", source.size(),
              " tensors into ", target.size());
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < target.size(); ++i) target[i].copy_(source[i], /*non_blocking=*/true);
}

/// Drops the gradients of `parameters` (like zero_grad(set_to_none=true)).
inline void clear_gradients(const std::vector<torch::Tensor>& parameters) {
  for (const auto& parameter : parameters) parameter.mutable_grad().reset();
}

}  // namespace parallax::comm
