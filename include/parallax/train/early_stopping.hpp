// EarlyStopping: stop when the monitored loss has not improved by min_delta for `patience`
// epochs. Runs on every process: the metrics it reads are already reduced, so all ranks stop
// together. After resume it carries on from the resumed epochs (the best loss and the epochs
// waited since), as Lightning's restored callback state does, so resuming does not reset its
// patience.
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

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
    resumed_ = info.history.epochs;
    monitors_validation_.reset();
  }

  void on_epoch_end(const EpochMetrics& metrics, FitControl& control) override {
    if (!monitors_validation_) {
      // What this fit measures decides what is monitored; resumed epochs that did not measure
      // it (trained without validation, say) are left out rather than compared with another loss.
      monitors_validation_ = !std::isnan(metrics.val_loss);
      for (const auto& resumed : resumed_)
        if (!std::isnan(monitored(resumed))) observe(monitored(resumed));
    }
    if (observe(monitored(metrics)) && waited_ >= patience_) {
      control.stop_requested = true;
      stopped_epoch_ = metrics.epoch;
    }
  }

  /// The epoch after which training stopped (0-based, as in History; MetricsLog's files and the
  /// progress bar count from 1), or -1.
  int64_t stopped_epoch() const { return stopped_epoch_; }

 private:
  int64_t patience_;
  double min_delta_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t waited_ = 0;
  int64_t stopped_epoch_ = -1;
  std::vector<EpochMetrics> resumed_;
  std::optional<bool> monitors_validation_;  // decided by the fit's first epoch

  double monitored(const EpochMetrics& metrics) const {
    return *monitors_validation_ ? metrics.val_loss : metrics.train_loss;
  }

  /// Takes one epoch's loss; returns whether it did not improve.
  bool observe(double loss) {
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
