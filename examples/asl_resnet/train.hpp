// asl_resnet train: any architecture, any policy, on an image folder or a packed cache.
// A trained model directory holds model.pt (a plain state dict, readable by torch.load),
// classes.txt, metrics.json (with the arch and image size the model needs), metrics.csv and the
// Trainer's checkpoint.pt (model, optimizer, epoch, generator: parallax::Trainer::resume).
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <parallax/parallax.hpp>

#include "image_files.hpp"
#include "models.hpp"
#include "output_paths.hpp"
#include "weights.hpp"

namespace asl {

namespace fs = std::filesystem;
namespace px = parallax;

struct TrainArgs {
  std::string data, arch = "resnet18", policy = "single", optimizer = "adam", schedule = "constant",
                    out, pretrained, amp_dtype = "bf16";
  int64_t nproc = 1, epochs = 5, batch_size = 32, samples = 0, image_size = 64, workers = 2;
  double lr = 1e-3, val_split = 0.2;
  uint64_t seed = 0;
  bool freeze_backbone = false, amp = false, channels_last = false, augment = false, strict = false,
       cudnn_benchmark = false, cuda_graphs = false;
};

/// Light augmentation for training images: a random shift of up to 1/16 of the side (reflected
/// border) and a random brightness/contrast change. Each call draws from its own generator
/// seeded by (seed, index, call count), so worker threads share only an atomic counter; which
/// call gets which count depends on thread timing, so augmented runs are not bit-reproducible.
template <class D>
class Augmented : public torch::data::datasets::Dataset<Augmented<D>> {
 public:
  Augmented(D dataset, uint64_t seed) : dataset_(std::move(dataset)), seed_(seed) {}
  torch::data::Example<> get(std::size_t index) override {
    auto example = dataset_.get(index);
    std::mt19937_64 rng(seed_ ^ (index * 0x9E3779B97F4A7C15ull) ^ (*calls_)++);
    const auto side = example.data.size(-1);
    const int64_t pad = std::max<int64_t>(1, side / 16);
    std::uniform_int_distribution<int64_t> offset(0, 2 * pad);
    std::uniform_real_distribution<double> gain(0.8, 1.2), bias(-0.2, 0.2);
    namespace F = torch::nn::functional;
    auto padded = F::pad(example.data.unsqueeze(0),
                         F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReflect))
                      .squeeze(0);
    example.data =
        padded.narrow(1, offset(rng), side).narrow(2, offset(rng), side) * gain(rng) + bias(rng);
    return example;
  }
  std::optional<std::size_t> size() const override { return dataset_.size(); }

 private:
  D dataset_;
  uint64_t seed_;
  std::shared_ptr<std::atomic<uint64_t>> calls_ = std::make_shared<std::atomic<uint64_t>>(0);
};

/// A Kaggle-layout root, a plain class-per-folder root, or the folder itself.
inline fs::path train_folder(const fs::path& data) {
  const auto kaggle = data / "asl_alphabet_train" / "asl_alphabet_train";
  return fs::is_directory(kaggle) ? kaggle : data;
}

inline torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

/// Rank 0 of a job (torchrun, srun, mpirun, --nproc), or a process on its own.
inline bool is_main_process() {
  return px::resolve_rendezvous().rank == 0;
}

/// The model a TrainArgs asks for: architecture, pretrained weights, frozen backbone, memory
/// format and precision. Returns the trainable parameters through `trainable`.
inline Network build_network(const TrainArgs& a, int64_t classes,
                             std::vector<torch::Tensor>& trainable) {
  torch::manual_seed(a.seed);
  Network network = make_network(a.arch, classes, a.image_size);
  if (!a.pretrained.empty()) {
    const auto skipped = load_state_dict(*network.model, a.pretrained, network.head);
    if (is_main_process())
      for (const auto& line : skipped) std::cerr << "asl_resnet: " << line << '\n';
  }
  trainable = a.freeze_backbone ? freeze_all_but(*network.model, network.head)
                                : network.model->parameters();
  set_speed_options(network, a.channels_last, a.amp ? a.amp_dtype : "none");
  return network;
}

inline void write_model_directory(const TrainArgs& a, const px::History& history,
                                  torch::nn::Module& module,
                                  const std::vector<std::string>& classes) {
  const fs::path out = a.out;
  nlohmann::json metrics = {{"val_accuracy", history.last().val_accuracy},
                            {"train_images_per_second", history.images_per_second()},
                            {"wall_seconds", history.wall_seconds},
                            {"policy", history.policy},
                            {"world_size", history.world_size},
                            {"arch", a.arch},
                            {"image_size", a.image_size},
                            {"batch_size", a.batch_size},
                            {"amp", a.amp ? a.amp_dtype : "off"},
                            {"channels_last", a.channels_last},
                            {"epochs", nlohmann::json::array()}};
  for (const auto& e : history.epochs)
    metrics["epochs"].push_back({{"epoch", e.epoch + 1},
                                 {"train_loss", e.train_loss},
                                 {"val_loss", e.val_loss},
                                 {"val_accuracy", e.val_accuracy},
                                 {"seconds", e.seconds},
                                 {"images_per_second", e.images_per_second}});
  std::string names;
  for (const auto& c : classes) names += c + "\n";
  // model.pt and classes.txt before metrics.json: a directory with metrics.json is complete.
  save_state_dict(module, out / "model.pt");
  px::write_text_atomically(out / "classes.txt", names);
  px::write_text_atomically(out / "metrics.json", metrics.dump(2) + "\n");
}

template <class Policy, class Data>
int train_with(const TrainArgs& a, const std::shared_ptr<Data>& data,
               const std::vector<std::string>& classes, Policy policy) {
  auto [train_set, val_set] = px::random_split(data, a.samples, a.val_split, a.seed);
  std::vector<torch::Tensor> trainable;
  Network network = build_network(a, static_cast<int64_t>(classes.size()), trainable);
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (a.optimizer == "adam")  // Adam's math in one kernel per dtype (Note [Why a fused Adam])
    optimizer = std::make_unique<px::FusedAdam>(trainable, a.lr);
  else
    optimizer = std::make_unique<torch::optim::SGD>(trainable,
                                                    torch::optim::SGDOptions(a.lr).momentum(0.9));
  auto options = px::TrainerOptions()
                     .epochs(a.epochs)
                     .batch_size(a.batch_size)
                     .seed(a.seed)
                     .workers(a.workers)
                     .lr_schedule(a.schedule == "cosine" ? px::cosine_schedule(a.lr, a.epochs)
                                                         : px::LrSchedule());
  if (a.amp && a.amp_dtype == "fp16") options.loss_scaling(px::LossScalingOptions());
  // cuDNN tries every convolution algorithm for each new input shape and keeps the fastest;
  // worth it when shapes repeat (a fixed image size), a no-op without cuDNN.
  if (a.cudnn_benchmark) at::globalContext().setBenchmarkCuDNN(true);
  px::Trainer<Policy> trainer(network.model, *optimizer, std::move(options), std::move(policy));
  const fs::path out = a.out;
  // Bad input found once training starts (e.g. a batch too small for the policy's replicas)
  // must not leave an output directory behind: what is created here is removed again then.
  const fs::path made = first_missing(out);
  fs::create_directories(out);
  trainer.add_callback(std::make_shared<px::ProgressBar>())
      .add_callback(std::make_shared<px::MetricsLog>(out / "metrics.csv", ""))
      .add_callback(std::make_shared<px::Checkpoint>(out / "checkpoint.pt"));
  const bool validate = val_set.size().value_or(0) > 0;
  px::History history;
  try {
    history = a.augment
                  ? (validate ? trainer.fit(Augmented(train_set, a.seed), val_set, cross_entropy)
                              : trainer.fit(Augmented(train_set, a.seed), cross_entropy))
                  : (validate ? trainer.fit(train_set, val_set, cross_entropy)
                              : trainer.fit(train_set, cross_entropy));
  } catch (const px::InputError&) {
    if (trainer.policy().is_main()) remove_made(out, made);
    throw;
  }
  if (!trainer.policy().is_main()) return 0;
  write_model_directory(a, history, *network.model, classes);
  std::printf("%s %s: val accuracy %.2f%%, %.1f images/s, %.1f s -> %s\n", a.arch.c_str(),
              history.policy.c_str(), 100 * history.last().val_accuracy,
              history.images_per_second(), history.wall_seconds, out.c_str());
  return 0;
}

/// The devices of --policy dp:N (refused, naming the flag, when N is not a number or there are
/// not that many devices).
inline std::vector<torch::Device> dp_devices(const TrainArgs& a) {
  int64_t replicas = 0;
  try {
    replicas = std::stoll(a.policy.substr(3));
  } catch (const std::exception&) {
    throw px::InputError("--policy " + a.policy + ": dp:N needs a number of replicas");
  }
  return px::replica_devices(replicas, "--policy " + a.policy);
}

inline px::ImageOptions image_options(const TrainArgs& a) {
  return px::ImageOptions().image_size(a.image_size);
}

/// --samples and --val-split against the `size` images of `source`.
inline void check_counts(const TrainArgs& a, int64_t size, const fs::path& source) {
  px::detail::require(a.samples <= size, "--samples ", a.samples, " is more than the ", size,
                      " images in '", source.string(), "'");
  const int64_t used = a.samples > 0 ? a.samples : size;
  px::detail::require(a.val_split == 0 || px::validation_size(used, a.val_split) > 0,
                      "--val-split ", a.val_split, " of ", used,
                      " images leaves no validation image (use more images, or --val-split 0)");
}

/// The packed cache at `path`, refused unless its images have --image-size.
inline std::shared_ptr<px::PackedImages> open_pack(const TrainArgs& a, const fs::path& path) {
  auto packed = std::make_shared<px::PackedImages>(path, image_options(a));
  px::detail::require(packed->image_size() == a.image_size, "pack '", path.string(), "' holds ",
                      packed->image_size(), " px images but --image-size is ", a.image_size);
  return packed;
}

template <class Data>
int train_on(const TrainArgs& a, const std::shared_ptr<Data>& data,
             const std::vector<std::string>& classes, const fs::path& source) {
  check_counts(a, static_cast<int64_t>(*data->size()), source);
  if (a.policy == "single")
    return a.cuda_graphs ? train_with(a, data, classes, px::CudaGraphSingle())
                         : train_with(a, data, classes, px::Single());
  px::detail::require(!a.cuda_graphs, "--cuda-graphs needs --policy single, got --policy ",
                      a.policy);
  if (a.policy.rfind("dp:", 0) == 0)
    return train_with(a, data, classes,
                      px::DataParallel<0>(px::DataParallelOptions().devices(dp_devices(a))));
  if (a.policy == "ddp:gloo") return train_with(a, data, classes, px::Distributed<px::Gloo>());
#if PARALLAX_HAS_NCCL
  if (a.policy == "ddp:nccl") return train_with(a, data, classes, px::Distributed<px::Nccl>());
#endif
  throw px::InputError("--policy " + a.policy + " is not available in this build");
}

/// The embedded default data set: synthesised next to the binary on first use.
fs::path default_data();

inline int train(const TrainArgs& a, int argc, char** argv) {
  const bool known_policy = a.policy == "single" || a.policy.rfind("dp:", 0) == 0 ||
                            a.policy == "ddp:gloo" || a.policy == "ddp:nccl";
  px::detail::require(known_policy, "unknown --policy '", a.policy,
                      "' (single | dp:N | ddp:gloo | ddp:nccl)");
  // Refused before any image is read: an unknown architecture or a too small image, a dp:N
  // asking for more devices than there are, an --out that cannot be written.
  {
    std::vector<torch::Tensor> unused;
    TrainArgs probe = a;
    probe.pretrained.clear();
    build_network(probe, 2, unused);
  }
  if (a.policy.rfind("dp:", 0) == 0) dp_devices(a);
  const px::RendezvousInfo job = px::resolve_rendezvous();
  if (job.rank == 0) require_writable_output(a.out, "--out", Output::directory);
  const fs::path data = a.data.empty() ? default_data() : fs::path(a.data);
  // --nproc N with a ddp policy: become the launcher of N ranks running the same command, unless
  // already one of a job's processes (torchrun, srun, mpirun: those ranks train together).
  if (a.nproc > 1 && job.world_size == 1) {
    px::detail::require(a.policy.rfind("ddp:", 0) == 0, "--nproc needs a ddp policy, got --policy ",
                        a.policy);
    // Bad data is refused here, once, rather than by every rank. (A folder's unreadable images
    // are found by the ranks, which decode them.)
    std::optional<std::size_t> images;
    if (fs::is_regular_file(data)) images = open_pack(a, data)->size();
#if ASL_IMAGE_FILES
    else
      images = px::ImageFolder(train_folder(data), image_options(a)).size();
#endif
    if (images) check_counts(a, static_cast<int64_t>(*images), data);
    px::LaunchOptions launch;
    launch.nproc = static_cast<int>(a.nproc);
    return px::launch_local(std::vector<std::string>(argv, argv + argc), launch);
  }
  if (fs::is_regular_file(data)) {
    auto packed = open_pack(a, data);
    return train_on(a, packed, packed->classes(), data);
  }
#if ASL_IMAGE_FILES
  auto folder = std::make_shared<px::ImageFolder>(train_folder(data), image_options(a));
  // Decode every file once: unreadable ones are named and skipped, or refused with --strict,
  // before training starts rather than in the middle of an epoch.
  std::optional<px::ProgressLine> progress;
  if (job.rank == 0)
    progress.emplace("checking images", static_cast<int64_t>(*folder->size()), "images/s");
  const auto check =
      px::check_images(*folder, *folder->size(),
                       static_cast<int>(std::thread::hardware_concurrency()), a.strict, [&] {
                         if (progress) progress->tick();
                       });
  if (job.rank == 0)
    for (const auto& skipped : check.skipped)
      std::cerr << "asl_resnet: skipped " << skipped << '\n';
  px::detail::require(!check.readable.empty(), "no image in '", data.string(), "' can be read");
  auto readable = std::make_shared<px::Subset<px::ImageFolder>>(folder, check.readable);
  return train_on(a, readable, folder->classes(), data);
#else
  throw no_image_files(data);
#endif
}

}  // namespace asl
