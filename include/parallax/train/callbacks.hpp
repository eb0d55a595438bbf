// Callbacks: hooks into Trainer::fit. Progress, logs, checkpoints and early stopping are all
// callbacks; users add their own the same way.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "parallax/train/metrics.hpp"

namespace parallax {

struct FitInfo {
  int64_t first_epoch = 0;  // > 0 after resume
  int64_t epochs = 0;
  int64_t steps_per_epoch = 0;
  int64_t samples_per_epoch = 0;  // on this process
  std::string policy;
  int64_t world_size = 1;
  History history;  // the epochs before first_epoch (after resume), policy and world size set
};

struct StepInfo {
  int64_t epoch = 0;
  int64_t epochs = 0;
  int64_t step = 0;  // 1-based within the epoch
  int64_t steps = 0;
  int64_t samples = 0;     // seen so far this epoch on this process
  torch::Tensor loss_sum;  // sum of per-sample losses so far (reading it syncs a GPU)
  double elapsed_seconds = 0;
};

/// What an epoch-end callback may ask of the Trainer.
struct FitControl {
  bool stop_requested = false;
  std::function<void(const std::filesystem::path&)> save_checkpoint;
};

class Callback {
 public:
  virtual ~Callback() = default;
  /// Main-only callbacks run on the main process alone (printing, writing files); others run on
  /// every process and must decide the same way everywhere (they see reduced metrics).
  virtual bool main_only() const { return true; }
  virtual void on_fit_begin(const FitInfo&) {}
  virtual void on_epoch_begin(int64_t /*epoch*/) {}
  virtual void on_step_end(const StepInfo&) {}
  virtual void on_epoch_end(const EpochMetrics&, FitControl&) {}
  virtual void on_fit_end(const History&) {}
};

}  // namespace parallax
