// A small, learnable but non-linear classification problem: K interleaved noisy spirals in 2-D.
#pragma once

#include <cmath>

#include <parallax/parallax.hpp>

namespace quickstart {

inline parallax::TensorDataset make_spirals(int64_t samples, int64_t classes, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto label = torch::arange(samples, torch::kLong) % classes;
  const auto radius = torch::rand({samples}, generator) * 0.9 + 0.1;
  const auto angle = label.to(torch::kFloat) * (2 * M_PI / classes) + radius * 4.0 +
                     torch::randn({samples}, generator) * 0.2;
  const auto points = torch::stack({radius * torch::cos(angle), radius * torch::sin(angle)}, 1);
  return parallax::TensorDataset(points, label);
}

/// A multi-layer perceptron (Cloneable, so DataParallel can replicate it).
struct MlpImpl : torch::nn::Cloneable<MlpImpl> {
  MlpImpl(int64_t inputs, int64_t hidden, int64_t outputs)
      : inputs(inputs), hidden(hidden), outputs(outputs) {
    reset();
  }
  void reset() override {
    layers = register_module(
        "layers", torch::nn::Sequential(torch::nn::Linear(inputs, hidden), torch::nn::ReLU(),
                                        torch::nn::Linear(hidden, hidden), torch::nn::ReLU(),
                                        torch::nn::Linear(hidden, outputs)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return layers->forward(x); }

  int64_t inputs, hidden, outputs;
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(Mlp);

inline torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

}  // namespace quickstart
