// MetricsLog: per-epoch metrics as CSV and JSON, rewritten atomically after every epoch so a
// crash never leaves a half-written file.
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "parallax/train/atomic_file.hpp"
#include "parallax/train/callbacks.hpp"

namespace parallax {

namespace detail {

/// A JSON number; NaN and infinities (not representable in JSON) become null.
inline std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

inline std::string json_string(const std::string& value) {
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace detail

/// Writes `csv_path` (a header and one row per epoch) and/or `json_path`:
/// {"policy", "world_size", "epochs": [{...}], and at the end "wall_seconds",
///  "train_images_per_second", "val_accuracy" (the last epoch's)}. An empty path skips a file.
/// Epochs are numbered from 1 in both files, as the progress bar counts them ("epoch 1/5");
/// `EpochMetrics::epoch` in a History stays the 0-based index the Trainer uses.
class MetricsLog : public Callback {
 public:
  MetricsLog(std::filesystem::path csv_path, std::filesystem::path json_path)
      : csv_path_(std::move(csv_path)), json_path_(std::move(json_path)) {}

  // Starts from the resumed epochs, so that the files hold every epoch at every point.
  void on_fit_begin(const FitInfo& info) override {
    history_ = info.history;
    history_.policy = info.policy;
    history_.world_size = info.world_size;
    finished_ = false;
  }
  void on_epoch_end(const EpochMetrics& metrics, FitControl&) override {
    history_.epochs.push_back(metrics);
    write();
  }
  void on_fit_end(const History& history) override {
    history_ = history;
    finished_ = true;
    write();
  }

  static std::string csv(const History& history) {
    std::ostringstream out;
    const auto names = EpochMetrics::field_names();
    for (std::size_t i = 0; i < names.size(); ++i) out << (i ? "," : "") << names[i];
    out << '\n';
    for (const auto& epoch : history.epochs) {
      const auto values = numbered_from_one(epoch);
      for (std::size_t i = 0; i < values.size(); ++i)
        out << (i ? "," : "") << (std::isfinite(values[i]) ? detail::json_number(values[i]) : "");
      out << '\n';
    }
    return out.str();
  }

  static std::string json(const History& history, bool finished) {
    std::ostringstream out;
    out << "{\n  \"policy\": " << detail::json_string(history.policy)
        << ",\n  \"world_size\": " << history.world_size;
    if (finished) {
      out << ",\n  \"wall_seconds\": " << detail::json_number(history.wall_seconds)
          << ",\n  \"train_images_per_second\": "
          << detail::json_number(history.images_per_second()) << ",\n  \"val_accuracy\": "
          << detail::json_number(history.empty() ? not_measured : history.last().val_accuracy);
    }
    out << ",\n  \"epochs\": [";
    const auto names = EpochMetrics::field_names();
    for (std::size_t e = 0; e < history.epochs.size(); ++e) {
      const auto values = numbered_from_one(history.epochs[e]);
      out << (e ? ",\n    {" : "\n    {");
      for (std::size_t i = 0; i < names.size(); ++i)
        out << (i ? ", " : "") << '"' << names[i] << "\": " << detail::json_number(values[i]);
      out << '}';
    }
    out << (history.epochs.empty() ? "]\n}\n" : "\n  ]\n}\n");
    return out.str();
  }

 private:
  static std::vector<double> numbered_from_one(const EpochMetrics& epoch) {
    auto values = epoch.values();
    values.front() += 1;  // field_names() starts with "epoch"
    return values;
  }

  void write() const {
    if (!csv_path_.empty()) write_text_atomically(csv_path_, csv(history_));
    if (!json_path_.empty()) write_text_atomically(json_path_, json(history_, finished_));
  }

  std::filesystem::path csv_path_;
  std::filesystem::path json_path_;
  History history_;
  bool finished_ = false;
};

}  // namespace parallax
