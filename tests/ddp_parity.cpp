// Our Distributed<Gloo> against PyTorch's DistributedDataParallel (tests/ddp_reference.py), run
// as 2 ranks by parallax-run after the Python side has trained:
//  * the same initial weights (a plain dict saved by torch.save, read with torch::pickle_load),
//    the same shards in the same order, the same optimizer; a model with BatchNorm, so buffer
//    broadcasting is compared too: every parameter and buffer after training within 1e-5;
//  * the sampler's per-rank indices equal DistributedSampler's (DIR/sampler.txt);
//  * no_sync: k micro-batches accumulated locally, then one synchronised, equal one step on the
//    k-times batch.
// Rank 0 prints "verdict: parity" when everything agrees; exit 1 otherwise.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <parallax/parallax.hpp>

namespace px = parallax;

namespace {

struct NetImpl : torch::nn::Cloneable<NetImpl> {
  NetImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", torch::nn::Linear(6, 16));
    bn = register_module("bn", torch::nn::BatchNorm1d(16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::tanh(bn(fc1(x)))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(Net);

c10::Dict<c10::IValue, c10::IValue> load_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw px::InputError("ddp_parity: cannot open " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  return torch::pickle_load(bytes).toGenericDict();
}

torch::Tensor entry(const c10::Dict<c10::IValue, c10::IValue>& dict, const std::string& key) {
  return dict.at(key).toTensor();
}

/// Every parameter and buffer of `net` by its torchvision-style dotted name.
std::vector<std::pair<std::string, torch::Tensor>> state(Net& net) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : net->named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : net->named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

bool sampler_matches(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int64_t size, world, rank, seed, epoch, drop_last;
    std::string colon;
    fields >> size >> world >> rank >> seed >> epoch >> drop_last >> colon;
    px::Indices expected;
    for (int64_t i; fields >> i;) expected.push_back(i);
    const auto ours =
        px::shard_indices(px::epoch_order(size, static_cast<uint64_t>(seed), epoch, true),
                          {rank, world}, drop_last != 0);
    if (ours != expected) {
      std::printf("sampler differs: %s\n", line.c_str());
      return false;
    }
    ++cases;
  }
  std::printf("sampler: %d cases equal DistributedSampler\n", cases);
  return cases > 0;
}

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

/// no_sync over k micro-batches vs one synchronised step on the whole per-rank batch.
double no_sync_difference(const torch::Tensor& x, const torch::Tensor& y, int64_t rank) {
  auto run = [&](bool accumulate) {
    torch::manual_seed(11);
    auto model = torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(),
                                       torch::nn::Linear(16, 3));
    px::Distributed<px::Gloo> policy(px::DistributedOptions().timeout(std::chrono::seconds(30)));
    policy.bind(px::make_model(model), {});
    torch::optim::SGD optimizer(model->parameters(), 0.5);
    const auto slice = [&](const torch::Tensor& t, int64_t from, int64_t n) {
      return t.narrow(0, from, n);
    };
    const int64_t per_rank = 16, k = 4, micro = per_rank / k;
    const int64_t base = rank * per_rank;
    optimizer.zero_grad();
    if (accumulate) {
      {
        auto guard = policy.no_sync();
        for (int64_t i = 0; i + 1 < k; ++i)
          policy.forward_backward(
              {slice(x, base + i * micro, micro), slice(y, base + i * micro, micro)}, cross_entropy,
              1.0 / k);
      }
      policy.forward_backward(
          {slice(x, base + (k - 1) * micro, micro), slice(y, base + (k - 1) * micro, micro)},
          cross_entropy, 1.0 / k);
    } else {
      policy.forward_backward({slice(x, base, per_rank), slice(y, base, per_rank)}, cross_entropy,
                              1.0);
    }
    optimizer.step();
    return torch::nn::utils::parameters_to_vector(model->parameters()).detach().clone();
  };
  const auto accumulated = run(true);
  const auto whole = run(false);
  return (accumulated - whole).abs().max().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&] {
    if (argc != 2)
      throw px::InputError("usage: ddp_parity DIR (after ddp_reference.py prepare/train)");
    const std::string dir = argv[1];
    const auto init = load_dict(dir + "/init.pt");
    // Also report whether torch::pickle_load reads an OrderedDict saved by torch.save.
    bool ordered_readable = false;
    try {
      ordered_readable =
          entry(load_dict(dir + "/init_ordered.pt"), "fc1.weight").equal(entry(init, "fc1.weight"));
    } catch (const std::exception&) {
    }
    const auto data = load_dict(dir + "/data.pt");
    px::TensorDataset dataset(entry(data, "x"), entry(data, "y"));
    Net net;
    {
      torch::NoGradGuard no_grad;
      for (auto& [name, tensor] : state(net)) tensor.copy_(entry(init, name));
    }
    torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
    px::Trainer<px::Distributed<px::Gloo>> trainer(
        net, optimizer, px::TrainerOptions().epochs(3).batch_size(8).seed(3).workers(1),
        px::Distributed<px::Gloo>(px::DistributedOptions().timeout(std::chrono::seconds(30))));
    trainer.fit(dataset, cross_entropy);
    const int64_t rank = trainer.policy().rendezvous().rank;
    const double no_sync = no_sync_difference(entry(data, "x"), entry(data, "y"), rank);
    if (rank != 0) return 0;
    const auto expected = load_dict(dir + "/python_final.pt");
    double worst = 0;
    std::string worst_name;
    for (auto& [name, tensor] : state(net)) {
      const double d = (tensor.to(torch::kDouble) - entry(expected, name).to(torch::kDouble))
                           .abs()
                           .max()
                           .item<double>();
      if (d >= worst) worst = d, worst_name = name;
    }
    std::printf("largest difference to PyTorch DDP: %.3g (%s)\n", worst, worst_name.c_str());
    std::printf("no_sync accumulation vs one step: %.3g\n", no_sync);
    std::printf("torch::pickle_load reads an OrderedDict state_dict: %s\n",
                ordered_readable ? "yes" : "no");
    const bool ok = sampler_matches(dir + "/sampler.txt") && worst <= 1e-5 && no_sync <= 1e-5;
    std::printf("verdict: %s\n", ok ? "parity" : "MISMATCH");
    return ok ? 0 : 1;
  });
}
