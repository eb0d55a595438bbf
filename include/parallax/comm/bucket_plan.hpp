// Which gradients travel together: the bucket plan shared by BucketReducer (which reduces
// them) and the step projection (which estimates what reducing them costs).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace parallax::comm {

/// Parameter indices per bucket, in the order backward makes gradients ready: the reverse of
/// registration (Note [Bucket order] in bucket_reducer.hpp). The first bucket holds at most
/// `first_cap_bytes`, the others `cap_bytes` (a parameter larger than a cap gets a bucket of
/// its own); a change of dtype or device starts a new bucket. Frozen parameters are left out.
inline std::vector<std::vector<std::size_t>> plan_buckets(
    const std::vector<torch::Tensor>& parameters, int64_t cap_bytes, int64_t first_cap_bytes) {
  std::vector<std::vector<std::size_t>> plan;
  int64_t filled = 0;
  for (std::size_t i = parameters.size(); i-- > 0;) {
    const auto& p = parameters[i];
    if (!p.requires_grad()) continue;
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const int64_t cap = plan.size() <= 1 ? first_cap_bytes : cap_bytes;
    const auto& last = plan.empty() ? p : parameters[plan.back().front()];
    if (plan.empty() || filled + bytes > cap || p.scalar_type() != last.scalar_type() ||
        p.device() != last.device()) {
      plan.emplace_back();
      filled = 0;
    }
    plan.back().push_back(i);
    filled += bytes;
  }
  return plan;
}

/// The bytes of each bucket of a plan.
inline std::vector<int64_t> bucket_bytes(const std::vector<torch::Tensor>& parameters,
                                         const std::vector<std::vector<std::size_t>>& plan) {
  std::vector<int64_t> bytes;
  for (const auto& bucket : plan) {
    int64_t total = 0;
    for (const auto i : bucket)
      total += parameters[i].numel() * static_cast<int64_t>(parameters[i].element_size());
    bytes.push_back(total);
  }
  return bytes;
}

}  // namespace parallax::comm
