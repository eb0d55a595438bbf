// Checkpoints: model (parameters and buffers), optimizer state, the next epoch, torch's CPU
// generator state and the history so far, in one torch archive written atomically.
//
// Resuming from the checkpoint taken after epoch k and training to epoch K gives the same
// parameters as an uninterrupted run: the epoch order depends only on (seed, epoch), and the
// generator that dropout and augmentation draw from is restored.
#pragma once

#include <filesystem>
#include <functional>
#include <mutex>

#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/train/atomic_file.hpp"
#include "parallax/train/callbacks.hpp"
#include "parallax/train/metrics.hpp"

namespace parallax {

struct CheckpointState {
  int64_t next_epoch = 0;
  History history;
  /// The LossScaler's {scale, growth tracker, skipped steps} (double); undefined without one.
  torch::Tensor loss_scaler;
};

namespace detail {

inline torch::Tensor history_tensor(const History& history) {
  const auto width = static_cast<int64_t>(EpochMetrics::field_names().size());
  auto table = torch::empty({static_cast<int64_t>(history.epochs.size()), width}, torch::kDouble);
  for (std::size_t e = 0; e < history.epochs.size(); ++e) {
    const auto values = history.epochs[e].values();
    for (int64_t i = 0; i < width; ++i)
      table[static_cast<int64_t>(e)][i] = values[static_cast<std::size_t>(i)];
  }
  return table;
}

inline torch::Tensor cpu_generator_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard lock(generator.mutex());
  return generator.get_state();
}

inline void set_cpu_generator_state(const torch::Tensor& state) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace detail

/// Writes a checkpoint to `path` (temporary file + rename).
inline void save_checkpoint(const std::filesystem::path& path, const torch::nn::Module& model,
                            const torch::optim::Optimizer& optimizer,
                            const CheckpointState& state) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("next_epoch", torch::tensor(state.next_epoch));
  archive.write("wall_seconds", torch::tensor(state.history.wall_seconds, torch::kDouble));
  archive.write("history", detail::history_tensor(state.history));
  archive.write("cpu_generator", detail::cpu_generator_state());
  if (state.loss_scaler.defined()) archive.write("loss_scaler", state.loss_scaler);
  write_atomically(
      path, [&](const std::filesystem::path& temporary) { archive.save_to(temporary.string()); });
}

/// Loads a checkpoint into `model` and `optimizer` (parameters keep their device) and restores
/// torch's CPU generator. Throws InputError naming the file when it is missing or unreadable.
inline CheckpointState load_checkpoint(const std::filesystem::path& path, torch::nn::Module& model,
                                       torch::optim::Optimizer& optimizer) {
  detail::require(std::filesystem::is_regular_file(path), "checkpoint '", path.string(),
                  "' does not exist");
  const auto parameters = model.parameters();
  const torch::Device device = parameters.empty() ? torch::kCPU : parameters.front().device();
  CheckpointState state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), device);
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    model.load(model_archive);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    torch::Tensor next_epoch, wall_seconds, history, generator;
    archive.read("next_epoch", next_epoch);
    archive.read("wall_seconds", wall_seconds);
    archive.read("history", history);
    archive.read("cpu_generator", generator);
    state.next_epoch = next_epoch.item<int64_t>();
    state.history.wall_seconds = wall_seconds.item<double>();
    history = history.to(torch::kCPU).contiguous();
    for (int64_t e = 0; e < history.size(0); ++e) {
      const double* row = history[e].data_ptr<double>();
      state.history.epochs.push_back(
          EpochMetrics::from_values(std::vector<double>(row, row + history.size(1))));
    }
    detail::set_cpu_generator_state(generator.to(torch::kCPU));
    torch::Tensor loss_scaler;
    if (archive.try_read("loss_scaler", loss_scaler)) state.loss_scaler = loss_scaler.cpu();
  } catch (const c10::Error& error) {
    throw InputError(detail::concat("parallax: cannot read checkpoint '", path.string(),
                                    "': ", detail::first_line(error.what_without_backtrace())));
  }
  return state;
}

/// Saves a checkpoint to `path` every `every` epochs and after the last epoch, however training
/// ends: at its last epoch, or stopped early by a callback added before or after this one.
class Checkpoint : public Callback {
 public:
  explicit Checkpoint(std::filesystem::path path, int64_t every = 1)
      : path_(std::move(path)), every_(every) {
    TORCH_CHECK(every_ >= 1, "parallax::Checkpoint: every must be >= 1, got ", every_);
  }

  void on_fit_begin(const FitInfo&) override { unsaved_ = false; }
  void on_epoch_end(const EpochMetrics& metrics, FitControl& control) override {
    save_ = control.save_checkpoint;
    unsaved_ = (metrics.epoch + 1) % every_ != 0 && !control.stop_requested;
    if (!unsaved_) save_(path_);
  }
  // A stop requested by a callback that runs after this one is only known here.
  void on_fit_end(const History&) override {
    if (unsaved_) save_(path_);
    unsaved_ = false;
    save_ = nullptr;  // it refers to the Trainer
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int64_t every_;
  bool unsaved_ = false;  // the last epoch's state is not in the file
  std::function<void(const std::filesystem::path&)> save_;
};

}  // namespace parallax
