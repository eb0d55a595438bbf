// What the Loader asks of a dataset: random access by index and a known size, the shape of
// torch::data::datasets::Dataset (get(i) returning an Example with .data and .target).
#pragma once

#include <concepts>
#include <cstddef>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/batch_memory.hpp"
#include "parallax/error.hpp"

namespace parallax {

/// A map-style dataset. `get` is called concurrently from the Loader's worker threads, so it must
/// be safe to call from several threads at once (reading tensors or files is; caching is not
/// unless guarded).
template <class D>
concept RandomAccessDataset = requires(D& dataset, std::size_t index) {
  { dataset.size() } -> std::convertible_to<std::optional<std::size_t>>;
  { dataset.get(index).data } -> std::convertible_to<torch::Tensor>;
  { dataset.get(index).target } -> std::convertible_to<torch::Tensor>;
};

/// A dataset that can also read a whole batch at once (e.g. PackedImages: one pass straight into
/// the batch tensor instead of one tensor per example and a stack). collate() prefers it; the
/// result must equal stacking get(i) over `indices`, allocated with `memory.empty`.
template <class D>
concept BatchReadable = requires(const D& dataset, const std::vector<int64_t>& indices,
                                 BatchMemory& memory) {
  { dataset.get_batch(indices, memory).input } -> std::convertible_to<torch::Tensor>;
  { dataset.get_batch(indices, memory).target } -> std::convertible_to<torch::Tensor>;
};

/// The number of examples, with a clear error for unsized or empty datasets.
template <RandomAccessDataset D>
int64_t checked_size(D& dataset, const char* role = "dataset") {
  const std::optional<std::size_t> size = dataset.size();
  detail::require(size.has_value(), role, " has no size: the Loader needs a random-access dataset");
  detail::require(*size > 0, role, " is empty (0 examples)");
  return static_cast<int64_t>(*size);
}

}  // namespace parallax
