// Distributed<Gloo> on the CPU.
//
//   bench_distributed single-vs-world1 [--repeats R]
//       Single vs Distributed<Gloo> with one process (the cost of the machinery, no peers).
//   parallax-run --nproc 2 bench_distributed buckets [--repeats R]
//       2 processes: bucketed all-reduce overlapped with backward vs all buckets after backward,
//       and a bucket-size sweep. Rank 0 prints the table.
//
// Each configuration trains one epoch of an MLP (512-1024-1024-1024-10, 10 MiB of fp32
// gradients) per repetition; configurations are interleaved in rotating order, medians reported.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <parallax/parallax.hpp>

#include "measure.hpp"

namespace px = parallax;

namespace {

torch::nn::Sequential make_mlp() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(512, 1024), torch::nn::ReLU(),
                               torch::nn::Linear(1024, 1024), torch::nn::ReLU(),
                               torch::nn::Linear(1024, 1024), torch::nn::ReLU(),
                               torch::nn::Linear(1024, 10));
}

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

template <class Policy>
double images_per_second(px::TensorDataset& data, Policy policy) {
  auto model = make_mlp();
  torch::optim::SGD optimizer(model->parameters(), 0.01);
  px::Trainer<Policy> trainer(model, optimizer,
                              px::TrainerOptions().epochs(1).batch_size(64).workers(1),
                              std::move(policy));
  return trainer.fit(data, cross_entropy).images_per_second();
}

px::Distributed<px::Gloo> gloo_policy(int64_t cap_mb, bool overlap) {
  return px::Distributed<px::Gloo>(px::DistributedOptions().buckets(
      px::comm::BucketOptions().cap_bytes(cap_mb << 20).overlap(overlap)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_distributed single-vs-world1|buckets [--repeats R]\n");
    return 2;
  }
  const std::string mode = argv[1];
  int repeats = 5;
  if (argc == 4 && !std::strcmp(argv[2], "--repeats")) repeats = std::stoi(argv[3]);
  const auto info = px::resolve_rendezvous();
  px::TensorDataset data(torch::randn({2048, 512}), torch::randint(10, {2048}));
  std::vector<bench::Candidate> configs;
  if (mode == "single-vs-world1") {
    configs.push_back(
        {"Single", [&] { return images_per_second(data, px::Single(torch::kCPU)); }, {}});
    configs.push_back({"Distributed<Gloo>, 1 process",
                       [&] { return images_per_second(data, gloo_policy(25, true)); },
                       {}});
  } else if (mode == "buckets") {
    configs.push_back({"overlapped, 25 MiB buckets (default)",
                       [&] { return images_per_second(data, gloo_policy(25, true)); },
                       {}});
    configs.push_back({"after backward, 25 MiB buckets",
                       [&] { return images_per_second(data, gloo_policy(25, false)); },
                       {}});
    for (int64_t cap : {1, 4, 100})
      configs.push_back({"overlapped, " + std::to_string(cap) + " MiB buckets",
                         [&, cap] { return images_per_second(data, gloo_policy(cap, true)); },
                         {}});
  } else {
    std::fprintf(stderr, "bench_distributed: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  images_per_second(data, gloo_policy(25, true));  // warm-up (also of the store and Gloo)
  bench::measure_interleaved(configs, repeats, info.rank == 0);
  if (info.rank != 0) return 0;
  std::printf(
      "MLP 512-1024-1024-1024-10 (10 MiB gradients), batch 64 per process, 2048 samples "
      "per epoch, %lld process(es), %d intra-op thread(s) each, median of %d\n\n",
      static_cast<long long>(info.world_size), at::get_num_threads(), repeats);
  bench::print_table(configs, "images/s, all ranks");
  return 0;
}
