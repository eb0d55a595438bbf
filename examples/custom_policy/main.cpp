// custom_policy: trains the same model with Single and with GradientAccumulation wrapped around
// Single and DataParallel<2>, and checks that every run ends with the same parameters.
// Exit code 0 when they agree within 1e-5, 1 otherwise.
#include <cstdio>

#include "../quickstart/spirals.hpp"
#include "gradient_accumulation.hpp"

namespace px = parallax;

static_assert(px::Policy<GradientAccumulation<px::Single, 4>>);
static_assert(px::Policy<GradientAccumulation<px::DataParallel<2>, 2>>);

template <class Policy>
torch::Tensor train(Policy policy) {
  torch::manual_seed(7);
  auto data = quickstart::make_spirals(600, 3, 7);
  quickstart::Mlp model(2, 32, 3);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  px::Trainer<Policy> trainer(model, optimizer,
                              px::TrainerOptions().epochs(3).batch_size(48).seed(7).workers(1),
                              std::move(policy));
  const auto history = trainer.fit(data, quickstart::cross_entropy);
  std::printf("%-28s loss %.6f accuracy %.2f%%\n", trainer.policy().name().c_str(),
              history.last().train_loss, 100 * history.last().train_accuracy);
  return torch::nn::utils::parameters_to_vector(model->parameters()).detach().clone();
}

int main() {
  const auto reference = train(px::Single(torch::kCPU));
  const auto accumulated = train(GradientAccumulation<px::Single, 4>(px::Single(torch::kCPU)));
  const auto accumulated_dp = train(GradientAccumulation<px::DataParallel<2>, 2>(
      px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU}))));
  const double diff = std::max((reference - accumulated).abs().max().item<double>(),
                               (reference - accumulated_dp).abs().max().item<double>());
  std::printf("largest parameter difference to Single: %.3g\n", diff);
  return diff <= 1e-5 ? 0 : 1;
}
