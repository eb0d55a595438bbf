// What a fit reports: one EpochMetrics per epoch, gathered in a History.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace parallax {

inline constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

/// One epoch, reduced over every replica and process. Accuracies are in 0..1, NaN when the task
/// is not a classification (output [N, C] against integer targets [N]) or there is no
/// validation set.
struct EpochMetrics {
  int64_t epoch = 0;  // 0-based
  double train_loss = not_measured;
  double train_accuracy = not_measured;
  double val_loss = not_measured;
  double val_accuracy = not_measured;
  double seconds = 0;            // whole epoch, validation included
  double images_per_second = 0;  // training samples / training seconds
  double learning_rate = not_measured;
  int64_t train_samples = 0;

  /// The fields in a fixed order, for CSV/JSON logs and checkpoints.
  static std::vector<std::string> field_names() {
    return {"epoch",   "train_loss",        "train_accuracy", "val_loss",     "val_accuracy",
            "seconds", "images_per_second", "learning_rate",  "train_samples"};
  }
  std::vector<double> values() const {
    return {static_cast<double>(epoch),
            train_loss,
            train_accuracy,
            val_loss,
            val_accuracy,
            seconds,
            images_per_second,
            learning_rate,
            static_cast<double>(train_samples)};
  }
  static EpochMetrics from_values(const std::vector<double>& v) {
    EpochMetrics m;
    m.epoch = static_cast<int64_t>(v.at(0));
    m.train_loss = v.at(1);
    m.train_accuracy = v.at(2);
    m.val_loss = v.at(3);
    m.val_accuracy = v.at(4);
    m.seconds = v.at(5);
    m.images_per_second = v.at(6);
    m.learning_rate = v.at(7);
    m.train_samples = static_cast<int64_t>(v.at(8));
    return m;
  }
};

/// Loss and accuracy of one pass over a dataset without training.
struct EvalMetrics {
  double loss = not_measured;
  double accuracy = not_measured;
  int64_t samples = 0;
};

struct History {
  std::vector<EpochMetrics> epochs;
  /// Wall time of the fit call(s) that produced these epochs.
  double wall_seconds = 0;
  std::string policy;
  int64_t world_size = 1;

  bool empty() const { return epochs.empty(); }
  const EpochMetrics& last() const { return epochs.back(); }
  /// Training throughput over all epochs.
  double images_per_second() const {
    double samples = 0, seconds = 0;
    for (const auto& e : epochs) {
      samples += static_cast<double>(e.train_samples);
      seconds += e.train_samples / (e.images_per_second > 0 ? e.images_per_second : INFINITY);
    }
    return seconds > 0 ? samples / seconds : 0;
  }
};

}  // namespace parallax
