// asl_resnet: the flagship example — an American-Sign-Language alphabet classifier (ResNet)
// trained through parallax with any policy.
//
//   asl_resnet synth   [--out DIR] [--per-class N] [--seed S]
//   asl_resnet prepare --data FOLDER --out FILE.pxpack [--image-size 64] [--strict]
//   asl_resnet train   [--data FOLDER|FILE.pxpack] [--arch resnet18] [--policy
//   single|dp:N|ddp:gloo|ddp:nccl]
//                      [--nproc N] [--epochs E] [--batch-size B] [--lr LR] [--optimizer adam|sgd]
//                      [--samples N] [--val-split F] [--image-size P] [--seed S] [--workers W]
//                      --out DIR
// Without --data, commands use (and if needed create) the synthetic set next to the binary.
// Exit codes: 0 success, 2 bad input (one line naming it), 1 other failures.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <parallax/data/image_folder.hpp>
#include <parallax/parallax.hpp>

#include "resnet.hpp"
#include "synth.hpp"

namespace fs = std::filesystem;
namespace px = parallax;

namespace {

struct TrainArgs {
  std::string data, arch = "resnet18", policy = "single", optimizer = "adam", out;
  int64_t nproc = 1, epochs = 5, batch_size = 32, samples = 0, image_size = 64, workers = 2;
  double lr = 1e-3, val_split = 0.2;
  uint64_t seed = 0;
};

/// The embedded default data set: synthesised next to the binary on first use.
fs::path default_data(const char* argv0) {
  const auto root = fs::weakly_canonical(fs::path(argv0)).parent_path().parent_path() / "asl-data";
  if (!fs::exists(root / "asl_alphabet_train")) {
    std::cerr << "asl_resnet: no --data given; synthesising the default set in " << root << '\n';
    asl::synthesize(root, 40, 0, static_cast<int>(std::thread::hardware_concurrency()));
  }
  return root;
}

/// A Kaggle-layout root, a plain class-per-folder root, or the folder itself.
fs::path train_folder(const fs::path& data) {
  const auto kaggle = data / "asl_alphabet_train" / "asl_alphabet_train";
  return fs::is_directory(kaggle) ? kaggle : data;
}

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

template <class Policy, class Data>
int train_with(const TrainArgs& a, const std::shared_ptr<Data>& data,
               const std::vector<std::string>& classes, Policy policy) {
  auto [train_set, val_set] = px::random_split(data, a.samples, a.val_split, a.seed);
  torch::manual_seed(a.seed);
  const int64_t depth = std::stoll(a.arch.substr(6));
  asl::ResNet model(depth, static_cast<int64_t>(classes.size()));
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (a.optimizer == "adam")
    optimizer = std::make_unique<torch::optim::Adam>(model->parameters(), a.lr);
  else
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                    torch::optim::SGDOptions(a.lr).momentum(0.9));
  px::Trainer<Policy> trainer(model, *optimizer,
                              px::TrainerOptions()
                                  .epochs(a.epochs)
                                  .batch_size(a.batch_size)
                                  .seed(a.seed)
                                  .workers(a.workers),
                              std::move(policy));
  const fs::path out = a.out;
  trainer.add_callback(std::make_shared<px::ProgressBar>())
      .add_callback(std::make_shared<px::MetricsLog>(out / "metrics.csv", ""))
      .add_callback(std::make_shared<px::Checkpoint>(out / "checkpoint.pt"));
  const px::History history = val_set.size().value_or(0) > 0
                                  ? trainer.fit(train_set, val_set, cross_entropy)
                                  : trainer.fit(train_set, cross_entropy);
  if (!trainer.policy().is_main()) return 0;
  nlohmann::json metrics = {{"val_accuracy", history.last().val_accuracy},
                            {"train_images_per_second", history.images_per_second()},
                            {"wall_seconds", history.wall_seconds},
                            {"policy", history.policy},
                            {"world_size", history.world_size},
                            {"arch", a.arch},
                            {"image_size", a.image_size},
                            {"epochs", nlohmann::json::array()}};
  for (const auto& e : history.epochs)
    metrics["epochs"].push_back({{"epoch", e.epoch + 1},
                                 {"train_loss", e.train_loss},
                                 {"val_loss", e.val_loss},
                                 {"val_accuracy", e.val_accuracy},
                                 {"seconds", e.seconds},
                                 {"images_per_second", e.images_per_second}});
  px::write_text_atomically(out / "metrics.json", metrics.dump(2) + "\n");
  std::string names;
  for (const auto& c : classes) names += c + "\n";
  px::write_text_atomically(out / "classes.txt", names);
  std::printf("%s: val accuracy %.2f%%, %.1f images/s, %.1f s -> %s\n", history.policy.c_str(),
              100 * history.last().val_accuracy, history.images_per_second(), history.wall_seconds,
              (out / "metrics.json").c_str());
  return 0;
}

template <class Data>
int train_on(const TrainArgs& a, const std::shared_ptr<Data>& data,
             const std::vector<std::string>& classes) {
  if (a.policy == "single") return train_with(a, data, classes, px::Single());
  if (a.policy.rfind("dp:", 0) == 0) {
    const auto devices =
        px::replica_devices(std::stoll(a.policy.substr(3)), "--policy " + a.policy);
    return train_with(a, data, classes,
                      px::DataParallel<0>(px::DataParallelOptions().devices(devices)));
  }
  if (a.policy == "ddp:gloo") return train_with(a, data, classes, px::Distributed<px::Gloo>());
#if PARALLAX_HAS_NCCL
  if (a.policy == "ddp:nccl") return train_with(a, data, classes, px::Distributed<px::Nccl>());
#endif
  throw px::InputError("asl_resnet: --policy " + a.policy + " is not available in this build");
}

int train(const TrainArgs& a, int argc, char** argv) {
  // --nproc N with a ddp policy: become the launcher of N ranks running the same command.
  if (a.nproc > 1 && !std::getenv("RANK")) {
    px::detail::require(a.policy.rfind("ddp:", 0) == 0, "--nproc needs a ddp policy, got --policy ",
                        a.policy);
    px::LaunchOptions launch;
    launch.nproc = static_cast<int>(a.nproc);
    return px::launch_local(std::vector<std::string>(argv, argv + argc), launch);
  }
  px::detail::require(!a.out.empty(), "train: --out DIR is required");
  px::detail::require(a.arch == "resnet18" || a.arch == "resnet34" || a.arch == "resnet50",
                      "--arch must be resnet18, resnet34 or resnet50, got ", a.arch);
  fs::create_directories(a.out);
  const fs::path data = a.data.empty() ? default_data(argv[0]) : fs::path(a.data);
  const auto options = px::ImageOptions().image_size(a.image_size);
  if (fs::is_regular_file(data)) {
    auto packed = std::make_shared<px::PackedImages>(data, options);
    px::detail::require(packed->image_size() == a.image_size, "pack '", data.string(), "' holds ",
                        packed->image_size(), " px images but --image-size is ", a.image_size);
    return train_on(a, packed, packed->classes());
  }
  auto folder = std::make_shared<px::ImageFolder>(train_folder(data), options);
  return train_on(a, folder, folder->classes());
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&]() -> int {
    CLI::App app{"asl_resnet: ASL alphabet classifier trained with parallax"};
    app.require_subcommand(1);
    std::string synth_out, prepare_data, prepare_out;
    int per_class = 40, prepare_size = 64;
    uint64_t synth_seed = 0;
    bool strict = false;
    auto* synth = app.add_subcommand("synth", "write a synthetic data set in the Kaggle layout");
    synth->add_option("--out", synth_out, "root folder")->required();
    synth->add_option("--per-class", per_class, "training images per class")
        ->check(CLI::PositiveNumber);
    synth->add_option("--seed", synth_seed, "random seed");
    auto* prepare = app.add_subcommand("prepare", "decode a folder once into a packed uint8 cache");
    prepare->add_option("--data", prepare_data,
                        "image folder (class sub-folders or Kaggle layout)");
    prepare->add_option("--out", prepare_out, "pack file to write")->required();
    prepare->add_option("--image-size", prepare_size, "pixels")->check(CLI::Range(8, 1024));
    prepare->add_flag("--strict", strict, "fail on an undecodable file instead of skipping it");
    TrainArgs t;
    auto* train_cmd = app.add_subcommand("train", "train a ResNet and write metrics");
    train_cmd->add_option("--data", t.data, "image folder or .pxpack");
    train_cmd->add_option("--arch", t.arch, "resnet18 | resnet34 | resnet50");
    train_cmd->add_option("--policy", t.policy, "single | dp:N | ddp:gloo | ddp:nccl");
    train_cmd->add_option("--nproc", t.nproc, "processes for ddp (built-in launcher)")
        ->check(CLI::PositiveNumber);
    train_cmd->add_option("--epochs", t.epochs)->check(CLI::PositiveNumber);
    train_cmd->add_option("--batch-size", t.batch_size)->check(CLI::PositiveNumber);
    train_cmd->add_option("--lr", t.lr)->check(CLI::PositiveNumber);
    train_cmd->add_option("--optimizer", t.optimizer)->check(CLI::IsMember({"adam", "sgd"}));
    train_cmd->add_option("--samples", t.samples, "subset size (0: all)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--val-split", t.val_split)->check(CLI::Range(0.0, 0.9));
    train_cmd->add_option("--image-size", t.image_size)->check(CLI::Range(8, 1024));
    train_cmd->add_option("--seed", t.seed);
    train_cmd->add_option("--workers", t.workers)->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--out", t.out, "output folder")->required();
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      throw px::InputError("asl_resnet: " + std::string(e.what()));
    }
    if (*synth) {
      asl::synthesize(synth_out, per_class, synth_seed,
                      static_cast<int>(std::thread::hardware_concurrency()));
      std::printf("wrote %d classes x %d images to %s\n", 29, per_class, synth_out.c_str());
      return 0;
    }
    if (*prepare) {
      const fs::path data = prepare_data.empty() ? default_data(argv[0]) : fs::path(prepare_data);
      px::ImageFolder folder(train_folder(data), px::ImageOptions().image_size(prepare_size));
      const auto report =
          px::pack_images(folder, *folder.size(), prepare_out,
                          static_cast<int>(std::thread::hardware_concurrency()), strict);
      for (const auto& skipped : report.skipped) std::cerr << "skipped " << skipped << '\n';
      std::printf("packed %lld images (%zu skipped) of %zu classes into %s\n",
                  static_cast<long long>(report.written), report.skipped.size(),
                  folder.classes().size(), prepare_out.c_str());
      return 0;
    }
    return train(t, argc, argv);
  });
}
