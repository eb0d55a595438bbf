// One rank of a Distributed<Gloo> job (started with RANK/WORLD_SIZE/MASTER_* set, e.g. by
// torchrun or tests/run_ranks.sh). Trains the test MLP for 3 epochs with a per-rank batch of 8,
// then rank 0 trains the same model with Single and a batch of 8 x WORLD_SIZE over the same
// data and checks that parameters and losses agree (the DistributedSampler split makes a global
// step over the same examples). Exit 0 on agreement; 1 on mismatch; 2 on bad input.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <parallax/parallax.hpp>

namespace px = parallax;

namespace {

struct NetImpl : torch::nn::Cloneable<NetImpl> {
  explicit NetImpl(int64_t hidden = 16, bool spare = false) : hidden(hidden), with_spare(spare) {
    reset();
  }
  void reset() override {
    fc1 = register_module("fc1", torch::nn::Linear(6, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, 3));
    // A layer that forward never uses: its parameters get no gradient.
    if (with_spare) spare = register_module("spare", torch::nn::Linear(3, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::tanh(fc1(x))); }
  int64_t hidden;
  bool with_spare;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, spare{nullptr};
};
TORCH_MODULE(Net);

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

/// DIST_WORKER_DIE=R:S[:stop] makes rank R kill itself with SIGKILL after step S, or with
/// ":stop" freeze (SIGSTOP) so that it stops answering (fault tests).
struct DieAtStep : px::Callback {
  DieAtStep(int64_t step, int signal) : step(step), signal(signal) {}
  bool main_only() const override { return false; }
  void on_step_end(const px::StepInfo& info) override {
    if (info.step == step) std::raise(signal);
  }
  int64_t step;
  int signal;
};

template <class Policy>
std::pair<px::History, torch::Tensor> train(Policy policy, int64_t batch, uint64_t init_seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  const auto x = torch::randn({96, 6}, generator);
  px::TensorDataset data(
      x, (x.select(1, 0) > 0).to(torch::kLong) + (x.select(1, 1) > 0.5).to(torch::kLong));
  // DIST_WORKER_MISMATCH=1: rank 1 builds a wider model (the shape check must name it).
  // DIST_WORKER_SPARE=1: the model has an unused layer (find_unused_parameters).
  const bool mismatch = std::getenv("DIST_WORKER_MISMATCH") && px::resolve_rendezvous().rank == 1;
  torch::manual_seed(init_seed);
  Net net(mismatch ? 17 : 16, std::getenv("DIST_WORKER_SPARE") != nullptr);
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
  px::Trainer<Policy> trainer(
      net, optimizer, px::TrainerOptions().epochs(3).batch_size(batch).seed(3), std::move(policy));
  if (const char* die = std::getenv("DIST_WORKER_DIE")) {
    const std::string spec = die;
    const auto rank = std::stoll(spec.substr(0, spec.find(':')));
    if (rank == px::resolve_rendezvous().rank && trainer.policy().world_size() > 1)
      trainer.add_callback(
          std::make_shared<DieAtStep>(std::stoll(spec.substr(spec.find(':') + 1)),
                                      spec.find(":stop") != std::string::npos ? SIGSTOP : SIGKILL));
  }
  auto history = trainer.fit(data, data, cross_entropy);
  auto params = torch::nn::utils::parameters_to_vector(net->parameters()).detach().clone();
  if constexpr (requires { trainer.policy().backend(); }) {
    // Every rank must hold bit-identical parameters: compare with rank 0's.
    std::vector<torch::Tensor> rank0{params.clone()};
    trainer.policy().backend().broadcast(rank0)->wait();
    if (!torch::equal(rank0[0], params))
      throw std::runtime_error("parameters differ from rank 0's after training");
  }
  return {history, params};
}

}  // namespace

int main() {
  return px::guarded_main([&] {
    // Different initial weights per rank: the broadcast from rank 0 must make them equal.
    const auto info = px::resolve_rendezvous();
    const char* timeout = std::getenv("DIST_WORKER_TIMEOUT_S");
    const auto seconds = std::chrono::seconds(timeout ? std::stoll(timeout) : 30);
    // DIST_WORKER_HOOK=bf16|fp16 sends compressed gradients; DIST_WORKER_NO_OVERLAP=1 sends all
    // buckets after backward.
    const char* hook = std::getenv("DIST_WORKER_HOOK");
    auto buckets = px::comm::BucketOptions()
                       .overlap(std::getenv("DIST_WORKER_NO_OVERLAP") == nullptr)
                       .find_unused_parameters(std::getenv("DIST_WORKER_FIND_UNUSED") != nullptr);
    if (hook)
      buckets.comm_hook(std::make_shared<px::comm::CompressionHook>(
          std::string(hook) == "fp16" ? torch::kHalf : torch::kBFloat16));
    auto [history, params] =
        train(px::Distributed<px::Gloo>(px::DistributedOptions().timeout(seconds).buckets(buckets)),
              8, 100 + static_cast<uint64_t>(info.rank));
    if (info.rank != 0) return 0;
    auto [reference, expected] = train(px::Single(torch::kCPU), 8 * info.world_size, 100);
    const double diff = (params - expected).abs().max().item<double>();
    std::printf("world %lld: max parameter difference to Single %.3g; loss %.6f vs %.6f\n",
                static_cast<long long>(info.world_size), diff, history.last().train_loss,
                reference.last().train_loss);
    // Compressed gradients round to 8 (bf16) or 11 (fp16) significant bits: close, not equal.
    const double tolerance = hook ? 2e-2 : 1e-5;
    const bool same_metrics =
        std::abs(history.last().train_loss - reference.last().train_loss) < tolerance &&
        history.last().train_samples == reference.last().train_samples;
    // ... and never bit-equal: that would mean the hook was not used.
    const bool match = diff <= tolerance && same_metrics && (!hook || diff > 1e-6);
    std::printf("verdict: %s\n", !match ? "MISMATCH"
                                 : hook ? "compressed gradients close to single"
                                        : "distributed equals single");
    return match ? 0 : 1;
  });
}
