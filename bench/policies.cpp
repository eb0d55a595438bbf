// Training throughput of Single, DataParallel<1> and DataParallel<2> on the CPU: the same small
// CNN, the same global batch and data; each repetition runs the three policies back to back
// (interleaved in rotating order, so machine noise hits all alike) and the table reports medians.
//
//   bench_policies [--repeats R] [--samples S] [--batch B]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <parallax/parallax.hpp>

#include "measure.hpp"

namespace px = parallax;

namespace {

struct CnnImpl : torch::nn::Cloneable<CnnImpl> {
  CnnImpl() { reset(); }
  void reset() override {
    conv1 =
        register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)));
    conv2 =
        register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)));
    fc = register_module("fc", torch::nn::Linear(32 * 8 * 8, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(conv1(x)), 2);
    h = torch::max_pool2d(torch::relu(conv2(h)), 2);
    return fc(h.flatten(1));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Cnn);

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

template <class Policy>
double images_per_second(px::TensorDataset& data, int64_t batch, Policy policy) {
  torch::manual_seed(0);
  Cnn model;
  torch::optim::SGD optimizer(model->parameters(), 0.01);
  px::Trainer<Policy> trainer(model, optimizer,
                              px::TrainerOptions().epochs(1).batch_size(batch).workers(1),
                              std::move(policy));
  return trainer.fit(data, cross_entropy).images_per_second();
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 5;
  int64_t samples = 2048, batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--repeats"))
      repeats = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--samples"))
      samples = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::stoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_policies: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  px::TensorDataset data(torch::randn({samples, 3, 32, 32}), torch::randint(10, {samples}));
  const int threads = at::get_num_threads();
  const std::vector<torch::Device> one{torch::kCPU}, two{torch::kCPU, torch::kCPU};
  images_per_second(data, batch, px::Single(torch::kCPU));  // warm-up
  std::vector<bench::Candidate> candidates{
      {"Single", [&] { return images_per_second(data, batch, px::Single(torch::kCPU)); }, {}},
      {"DataParallel<1>",
       [&] {
         return images_per_second(data, batch,
                                  px::DataParallel<1>(px::DataParallelOptions().devices(one)));
       },
       {}},
      {"DataParallel<2> (CPU replicas)",
       [&] {
         return images_per_second(data, batch,
                                  px::DataParallel<2>(px::DataParallelOptions().devices(two)));
       },
       {}}};
  bench::measure_interleaved(candidates, repeats, true);
  std::printf(
      "CNN 3x32x32 -> 10, global batch %lld, %lld samples/epoch, %d intra-op threads, "
      "median of %d\n\n",
      static_cast<long long>(batch), static_cast<long long>(samples), threads, repeats);
  bench::print_table(candidates, "images/s");
  return 0;
}
