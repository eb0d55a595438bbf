// Trains a small classifier through an installed parallax with two policies; exits 0 when both
// learn (training loss falls by half).
#include <cstdio>

#include <parallax/parallax.hpp>

namespace px = parallax;

template <class Policy>
bool learns(Policy policy) {
  torch::manual_seed(3);
  const auto x = torch::randn({400, 8});
  px::TensorDataset data(x, (x.sum(1) > 0).to(torch::kLong));
  torch::nn::Sequential model(torch::nn::Linear(8, 16), torch::nn::Tanh(),
                              torch::nn::Linear(16, 2));
  torch::optim::Adam optimizer(model->parameters(), 1e-2);
  px::Trainer<Policy> trainer(model, optimizer, px::TrainerOptions().epochs(5).batch_size(40),
                              std::move(policy));
  const auto history = trainer.fit(data, [](const torch::Tensor& out, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(out, y);
  });
  std::printf("%s: loss %.4f -> %.4f\n", history.policy.c_str(), history.epochs.front().train_loss,
              history.last().train_loss);
  return history.last().train_loss < 0.5 * history.epochs.front().train_loss;
}

int main() {
  std::printf("parallax %d.%d.%d, LibTorch CUDA=%d NCCL=%d\n", px::version_major, px::version_minor,
              px::version_patch, px::torch_has_cuda, px::torch_has_nccl);
  const bool ok =
      learns(px::Single()) && learns(px::DataParallel<2>(px::DataParallelOptions().devices(
                                  {px::default_device(), px::default_device()})));
  return ok ? 0 : 1;
}
