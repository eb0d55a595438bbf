// Collation: a list of examples -> one Batch, with a clear error naming the offending index.
#pragma once

#include <algorithm>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/data/batch_memory.hpp"
#include "parallax/data/dataset.hpp"
#include "parallax/data/index_pipeline.hpp"
#include "parallax/error.hpp"

namespace parallax {

/// Reads `indices` from `dataset` and stacks inputs and targets along a new dimension 0, into
/// tensors from `memory` (page-locked when a later non_blocking copy to a CUDA device is to
/// overlap with compute; else recycled, Note [Recycling batch memory]).
template <RandomAccessDataset D>
Batch collate(D& dataset, const Indices& indices, BatchMemory& memory) {
  if constexpr (BatchReadable<D>) {
    auto batch = dataset.get_batch(indices, memory);
    return Batch{std::move(batch.input), std::move(batch.target)};
  }
  std::vector<torch::Tensor> inputs;
  std::vector<torch::Tensor> targets;
  inputs.reserve(indices.size());
  targets.reserve(indices.size());
  for (const int64_t index : indices) {
    auto example = dataset.get(static_cast<std::size_t>(index));
    inputs.emplace_back(std::move(example.data));
    targets.emplace_back(std::move(example.target));
  }
  // Host examples are stacked straight into the batch's memory (pinned: no second copy).
  auto stack = [&memory](const std::vector<torch::Tensor>& parts) {
    // Device tensors, examples in an autograd graph (out= variants refuse those), or of
    // mixed dtypes (stack promotes them).
    const auto type = parts.front().scalar_type();
    if (!parts.front().is_cpu() || std::ranges::any_of(parts, [&](const torch::Tensor& t) {
          return t.requires_grad() || t.scalar_type() != type;
        }))
      return torch::stack(parts);
    std::vector<int64_t> shape{static_cast<int64_t>(parts.size())};
    const auto sizes = parts.front().sizes();
    shape.insert(shape.end(), sizes.begin(), sizes.end());
    auto out = memory.empty(shape, parts.front().scalar_type());
    return torch::stack_out(out, parts);
  };
  Batch batch;
  try {
    batch.input = stack(inputs);
    batch.target = stack(targets);
  } catch (const c10::Error& error) {
    throw InputError(
        detail::concat("parallax: examples of one batch have different shapes (first "
                       "index ",
                       indices.front(), "): ", error.what_without_backtrace()));
  }
  return batch;
}

}  // namespace parallax
