// A collated batch: inputs and targets stacked along dimension 0.
#pragma once

#include <torch/torch.h>

namespace parallax {

struct Batch {
  torch::Tensor input;
  torch::Tensor target;

  int64_t size() const { return input.defined() ? input.size(0) : 0; }
};

}  // namespace parallax
