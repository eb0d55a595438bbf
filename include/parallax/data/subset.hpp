// Subset and a seeded random split of any random-access dataset (torch.utils.data.Subset and
// random_split).
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/dataset.hpp"
#include "parallax/error.hpp"

namespace parallax {

/// The examples `indices` of a shared dataset, in that order.
template <RandomAccessDataset D>
class Subset
    : public torch::data::datasets::Dataset<Subset<D>, decltype(std::declval<D&>().get(0))> {
 public:
  using Example = decltype(std::declval<D&>().get(0));
  Subset(std::shared_ptr<D> dataset, std::vector<int64_t> indices)
      : dataset_(std::move(dataset)), indices_(std::move(indices)) {}
  Example get(std::size_t index) override {
    return dataset_->get(static_cast<std::size_t>(indices_.at(index)));
  }
  std::optional<std::size_t> size() const override { return indices_.size(); }
  const std::vector<int64_t>& indices() const { return indices_; }
  /// Whole batches when the underlying dataset reads them (see BatchReadable).
  auto get_batch(const std::vector<int64_t>& indices,
                 BatchMemory& memory) const requires BatchReadable<D> {
    std::vector<int64_t> mapped;
    mapped.reserve(indices.size());
    for (const int64_t i : indices) mapped.push_back(indices_.at(static_cast<std::size_t>(i)));
    return dataset_->get_batch(mapped, memory);
  }

 private:
  std::shared_ptr<D> dataset_;
  std::vector<int64_t> indices_;
};

/// How many of `used` examples random_split puts in the validation set (rounded down, so it
/// may be none).
inline int64_t validation_size(int64_t used, double validation_fraction) {
  return static_cast<int64_t>(static_cast<double>(used) * validation_fraction);
}

/// Shuffles the dataset's indices with `seed`, keeps the first `samples` (0: all; more than the
/// dataset holds is an error), and splits
/// them into (train, validation) with `validation_fraction` of them in validation.
template <RandomAccessDataset D>
std::pair<Subset<D>, Subset<D>> random_split(std::shared_ptr<D> dataset, int64_t samples,
                                             double validation_fraction, uint64_t seed) {
  const int64_t size = checked_size(*dataset);
  detail::require(samples >= 0, "samples must be >= 0, got ", samples);
  detail::require(samples <= size, "asked for ", samples, " samples but the dataset has ", size);
  detail::require(validation_fraction >= 0 && validation_fraction < 1,
                  "validation fraction must be in [0, 1), got ", validation_fraction);
  const int64_t used = samples > 0 ? samples : size;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto order = torch::randperm(size, generator, torch::kLong);
  const auto* data = order.data_ptr<int64_t>();
  const int64_t validation = validation_size(used, validation_fraction);
  detail::require(used - validation >= 1, "no training examples left after the split");
  std::vector<int64_t> train(data, data + (used - validation)),
      val(data + (used - validation), data + used);
  return {Subset<D>(dataset, std::move(train)), Subset<D>(dataset, std::move(val))};
}

}  // namespace parallax
