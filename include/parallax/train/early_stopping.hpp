// EarlyStopping: stop when the monitored loss has not improved by min_delta for `patience`
// epochs. Runs on every process: the metrics it reads are already reduced, so all ranks stop
// together. After resume it carries on from the resumed epochs (the best loss and the epochs
// waited since), as Lightning's restored callback state does, so resuming does not reset its
// patience.
#pragma once

#include <cmath>
#include <limits>

#include "parallax/train/callbacks.hpp"

namespace parallax {

class EarlyStopping : public Callback {
 public:
  /// Monitors val_loss, or train_loss when there is no validation set.
  explicit EarlyStopping(int64_t patience, double min_delta = 0.0)
      : patience_(patience), min_delta_(min_delta) {}

  bool main_only() const override { return false; }

  void on_fit_begin(const FitInfo& info) override {
    best_ = std::numeric_limits<double>::infinity();
    waited_ = 0;
    stopped_epoch_ = -1;
    for (const auto& resumed : info.history.epochs) observe(resumed);
  }

  void on_epoch_end(const EpochMetrics& metrics, FitControl& control) override {
    if (observe(metrics) && waited_ >= patience_) {
      control.stop_requested = true;
      stopped_epoch_ = metrics.epoch;
    }
  }

  /// The epoch after which training stopped, or -1.
  int64_t stopped_epoch() const { return stopped_epoch_; }

 private:
  int64_t patience_;
  double min_delta_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t waited_ = 0;
  int64_t stopped_epoch_ = -1;

  /// Takes one epoch's loss; returns whether it did not improve.
  bool observe(const EpochMetrics& metrics) {
    const double loss = std::isnan(metrics.val_loss) ? metrics.train_loss : metrics.val_loss;
    if (loss < best_ - min_delta_) {
      best_ = loss;
      waited_ = 0;
      return false;
    }
    ++waited_;
    return true;
  }
};

}  // namespace parallax
