// Tensors grouped by device and dtype: the unit ATen's multi-tensor (_foreach_*, _amp_*) kernels
// take, one list each. Shared by loss scaling and gradient clipping.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace parallax::detail {

/// `tensors` in lists of one device and dtype each, in their order within a list.
inline std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> by_device_and_dtype(
    const std::vector<torch::Tensor>& tensors) {
  std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors)
    groups[{t.device().str(), static_cast<int>(t.scalar_type())}].push_back(t);
  return groups;
}

}  // namespace parallax::detail
