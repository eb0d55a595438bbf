// Gradient and parameter traffic between model copies inside one process (DataParallel).
// Cross-process traffic (c10d process groups) lives beside it in comm/.
#pragma once

#include <map>
#include <vector>

#include <torch/torch.h>

namespace parallax::comm {

// Note [Coalesced transfers]
// A ResNet has over a hundred parameter tensors, most of them small; copying each between GPUs
// costs a launch and a round of bookkeeping per tensor. Across devices we therefore move one
// flat buffer per dtype (flatten on the source device, one copy, views on the target), as
// torch.cuda.comm.broadcast_coalesced / reduce_add_coalesced do. On one device the tensors are
// used in place: flattening would only add a copy.

/// `tensors` on `device`, moved as one flat buffer per dtype; the results are views of those
/// buffers, in the order of `tensors`.
inline std::vector<torch::Tensor> coalesced_to(const std::vector<torch::Tensor>& tensors,
                                               torch::Device device) {
  std::map<c10::ScalarType, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < tensors.size(); ++i) groups[tensors[i].scalar_type()].push_back(i);
  std::vector<torch::Tensor> moved(tensors.size());
  for (const auto& [dtype, members] : groups) {
    std::vector<torch::Tensor> group;
    for (const auto i : members) group.push_back(tensors[i]);
    // non_blocking only towards a GPU: a GPU-to-CPU copy would return before the bytes arrive.
    const auto flat =
        at::flatten_dense_tensors(group).to(device, /*non_blocking=*/device.is_cuda());
    const auto parts = at::unflatten_dense_tensors(flat, group);
    for (std::size_t k = 0; k < members.size(); ++k) moved[members[k]] = parts[k];
  }
  return moved;
}

/// master.grad += replica.grad for every parameter (the replica's gradient copied to the
/// master's device). Parameters without a gradient in the replica are skipped.
inline void accumulate_gradients(const std::vector<torch::Tensor>& master,
                                 const std::vector<torch::Tensor>& replica) {
  TORCH_CHECK(master.size() == replica.size(), "parallax: replica has ", replica.size(),
              " parameters, master has ", master.size());
  torch::NoGradGuard no_grad;
  std::vector<std::size_t> present;
  std::vector<torch::Tensor> sources;
  for (std::size_t i = 0; i < master.size(); ++i)
    if (replica[i].grad().defined()) {
      present.push_back(i);
      sources.push_back(replica[i].grad());
    }
  if (sources.empty()) return;
  const torch::Device device = master[present.front()].device();
  const bool across = sources.front().device() != device;
  const auto moved = across ? coalesced_to(sources, device) : sources;  // Note [Coalesced ...]
  for (std::size_t k = 0; k < present.size(); ++k) {
    torch::Tensor& target = master[present[k]].mutable_grad();
    if (target.defined()) {
      target.add_(moved[k]);
    } else {  // laid out like the parameter (channels-last stays channels-last)
      target = torch::empty_like(master[present[k]], torch::MemoryFormat::Preserve).copy_(moved[k]);
    }
  }
}

/// Copies `source` tensors into `target` tensors in place (parameters or buffers).
inline void copy_into(const std::vector<torch::Tensor>& target,
                      const std::vector<torch::Tensor>& source) {
  TORCH_CHECK(target.size() == source.size(), "parallax: cannot copy ", source.size(),
              " tensors into ", target.size());
  torch::NoGradGuard no_grad;
  if (target.empty()) return;
  const bool across = target.front().device() != source.front().device();
  const auto moved = across ? coalesced_to(source, target.front().device()) : source;
  for (std::size_t i = 0; i < target.size(); ++i) target[i].copy_(moved[i], /*non_blocking=*/true);
}

/// Drops the gradients of `parameters` (like zero_grad(set_to_none=true)).
inline void clear_gradients(const std::vector<torch::Tensor>& parameters) {
  for (const auto& parameter : parameters) parameter.mutable_grad().reset();
}

}  // namespace parallax::comm
