// TensorDataset: examples are rows of an input tensor and a target tensor (torch's own
// TensorDataset holds one tensor and yields no target).
#pragma once

#include <optional>

#include <torch/torch.h>

#include "parallax/error.hpp"

namespace parallax {

class TensorDataset : public torch::data::datasets::Dataset<TensorDataset> {
 public:
  TensorDataset(torch::Tensor inputs, torch::Tensor targets)
      : inputs_(std::move(inputs)), targets_(std::move(targets)) {
    detail::require(
        inputs_.dim() >= 1 && targets_.dim() >= 1 && inputs_.size(0) == targets_.size(0),
        "TensorDataset: inputs and targets need the same first dimension, got ", inputs_.sizes(),
        " and ", targets_.sizes());
  }

  torch::data::Example<> get(std::size_t index) override {
    const auto i = static_cast<int64_t>(index);
    return {inputs_[i], targets_[i]};
  }
  std::optional<std::size_t> size() const override {
    return static_cast<std::size_t>(inputs_.size(0));
  }

  const torch::Tensor& inputs() const { return inputs_; }
  const torch::Tensor& targets() const { return targets_; }

 private:
  torch::Tensor inputs_;
  torch::Tensor targets_;
};

}  // namespace parallax
