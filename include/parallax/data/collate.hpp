// Collation: a list of examples -> one Batch, with a clear error naming the offending index.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/data/dataset.hpp"
#include "parallax/data/index_pipeline.hpp"
#include "parallax/error.hpp"

namespace parallax {

/// Reads `indices` from `dataset` and stacks inputs and targets along a new dimension 0.
/// `pin` puts the batch in page-locked memory so that a later non_blocking copy to a CUDA
/// device can overlap with compute.
template <RandomAccessDataset D>
Batch collate(D& dataset, const Indices& indices, bool pin) {
  std::vector<torch::Tensor> inputs;
  std::vector<torch::Tensor> targets;
  inputs.reserve(indices.size());
  targets.reserve(indices.size());
  for (const int64_t index : indices) {
    auto example = dataset.get(static_cast<std::size_t>(index));
    inputs.emplace_back(std::move(example.data));
    targets.emplace_back(std::move(example.target));
  }
  Batch batch;
  try {
    batch.input = torch::stack(inputs);
    batch.target = torch::stack(targets);
  } catch (const c10::Error& error) {
    throw InputError(
        detail::concat("parallax: examples of one batch have different shapes (first "
                       "index ",
                       indices.front(), "): ", error.what_without_backtrace()));
  }
  if (pin) {
    batch.input = batch.input.pin_memory();
    batch.target = batch.target.pin_memory();
  }
  return batch;
}

}  // namespace parallax
