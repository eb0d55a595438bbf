// quickstart: trains an MLP on noisy spirals with the policy named on the command line, printing
// progress and metrics, writing OUT/metrics.{csv,json} and OUT/checkpoint.pt.
//
//   quickstart [--policy single|dp:N] [--epochs E] [--batch-size B] [--samples S] [--lr LR]
//              [--seed S] [--workers W] [--out DIR]
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "spirals.hpp"

namespace px = parallax;

namespace {

struct Args {
  std::string policy = "single";
  int64_t epochs = 4, batch_size = 64, samples = 6000, workers = 2;
  double lr = 3e-3;
  uint64_t seed = 0;
  std::string out = "quickstart-out";
};

int64_t to_int(const std::string& flag, const std::string& text) {
  try {
    std::size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw px::InputError("quickstart: " + flag + " expects an integer, got '" + text + "'");
}

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout
          << "usage: quickstart [--policy single|dp:N] [--epochs E] [--batch-size B]\n"
             "                  [--samples S] [--lr LR] [--seed S] [--workers W] [--out DIR]\n";
      std::exit(0);
    }
    if (i + 1 >= argc)
      throw px::InputError("quickstart: " + flag + " needs a value (or unknown flag)");
    const std::string value = argv[++i];
    if (flag == "--policy")
      args.policy = value;
    else if (flag == "--epochs")
      args.epochs = to_int(flag, value);
    else if (flag == "--batch-size")
      args.batch_size = to_int(flag, value);
    else if (flag == "--samples")
      args.samples = to_int(flag, value);
    else if (flag == "--workers")
      args.workers = to_int(flag, value);
    else if (flag == "--seed")
      args.seed = static_cast<uint64_t>(to_int(flag, value));
    else if (flag == "--lr")
      args.lr = std::stod(value);
    else if (flag == "--out")
      args.out = value;
    else
      throw px::InputError("quickstart: unknown flag " + flag);
  }
  return args;
}

template <class Policy>
int train(const Args& args, Policy policy) {
  torch::manual_seed(args.seed);
  auto train_set = quickstart::make_spirals(args.samples, 3, args.seed);
  auto val_set = quickstart::make_spirals(args.samples / 5, 3, args.seed + 1);
  quickstart::Mlp model(2, 64, 3);
  torch::optim::Adam optimizer(model->parameters(), args.lr);
  px::Trainer<Policy> trainer(model, optimizer,
                              px::TrainerOptions()
                                  .epochs(args.epochs)
                                  .batch_size(args.batch_size)
                                  .seed(args.seed)
                                  .workers(args.workers),
                              std::move(policy));
  trainer.add_callback(std::make_shared<px::ProgressBar>())
      .add_callback(
          std::make_shared<px::MetricsLog>(args.out + "/metrics.csv", args.out + "/metrics.json"))
      .add_callback(std::make_shared<px::Checkpoint>(args.out + "/checkpoint.pt"));
  const px::History history = trainer.fit(train_set, val_set, quickstart::cross_entropy);
  std::printf("policy %s: final val accuracy %.2f%%, %.0f images/s, %.2f s\n",
              history.policy.c_str(), 100 * history.last().val_accuracy,
              history.images_per_second(), history.wall_seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&] {
    const Args args = parse(argc, argv);
    if (args.policy == "single") return train(args, px::Single());
    if (args.policy.rfind("dp:", 0) == 0) {
      const int64_t replicas = to_int("--policy dp:N", args.policy.substr(3));
      return train(args, px::DataParallel<0>(px::DataParallelOptions().devices(
                             px::replica_devices(replicas, "--policy " + args.policy))));
    }
    throw px::InputError("quickstart: --policy must be single or dp:N, got '" + args.policy + "'");
  });
}
