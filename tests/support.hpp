// Small models and datasets shared by the tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include <parallax/parallax.hpp>

// c10's logging defines glog-style CHECK macros; doctest's must win in tests.
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LE
#undef CHECK_LT
#undef CHECK_GE
#undef CHECK_GT
#include <doctest/doctest.h>

namespace test {

namespace px = parallax;

/// An MLP without BatchNorm (so replicas' buffers play no role); optional dropout.
struct NetImpl : torch::nn::Cloneable<NetImpl> {
  explicit NetImpl(int64_t inputs = 6, int64_t hidden = 16, int64_t classes = 3,
                   double dropout = 0.0)
      : inputs(inputs), hidden(hidden), classes(classes), dropout(dropout) {
    reset();
  }
  void reset() override {
    fc1 = register_module("fc1", torch::nn::Linear(inputs, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, classes));
    drop = register_module("drop", torch::nn::Dropout(dropout));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(drop(torch::tanh(fc1(x)))); }

  int64_t inputs, hidden, classes;
  double dropout;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(Net);

/// An empty directory under the system's temporary folder, unique to this process.
inline std::filesystem::path fresh_directory(const std::string& name) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("parallax-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

inline px::TensorDataset classification_data(int64_t n, uint64_t seed = 1, int64_t inputs = 6) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto x = torch::randn({n, inputs}, generator);
  const auto y = (x.select(1, 0) > 0).to(torch::kLong) + (x.select(1, 1) > 0.5).to(torch::kLong);
  return px::TensorDataset(x, y);
}

inline torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

inline torch::Tensor flat_parameters(const torch::nn::Module& module) {
  std::vector<torch::Tensor> flat;  // reshape, not view: parameters may be channels-last
  for (const auto& p : module.parameters()) flat.push_back(p.detach().cpu().reshape({-1}));
  return torch::cat(flat);
}

inline double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

/// Gradients of one step of `policy` on `batch`, and parameters after `steps` SGD steps.
template <class Policy>
std::pair<torch::Tensor, torch::Tensor> run_steps(Policy policy, const px::Batch& batch,
                                                  int steps) {
  torch::manual_seed(11);
  Net net;
  auto model = px::make_model(net);
  policy.bind(model, {});
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.5).momentum(0.9));
  torch::Tensor first_gradient;
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    policy.forward_backward(batch, cross_entropy, 1.0);
    if (step == 0) {
      std::vector<torch::Tensor> grads;
      for (const auto& p : net->parameters()) grads.push_back(p.grad().flatten().cpu());
      first_gradient = torch::cat(grads);
    }
    optimizer.step();
    policy.on_parameters_changed();
  }
  return {first_gradient, flat_parameters(*net)};
}

/// A dataset that records which indices were read and can be made slow or failing.
struct RecordingDataset : torch::data::datasets::Dataset<RecordingDataset> {
  explicit RecordingDataset(int64_t n) : n(n) {}
  torch::data::Example<> get(std::size_t index) override {
    if (static_cast<int64_t>(index) == fail_at) throw std::runtime_error("broken example");
    return {torch::full({2}, static_cast<float>(index)),
            torch::tensor(static_cast<int64_t>(index))};
  }
  std::optional<std::size_t> size() const override { return static_cast<std::size_t>(n); }
  int64_t n;
  int64_t fail_at = -1;
};

}  // namespace test
