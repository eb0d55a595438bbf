// ProgressBar: epoch, step, loss, images/s and ETA on the main process. On a terminal one line
// redrawn in place (at most ~10 times a second); otherwise plain lines at every tenth of an
// epoch, so logs stay readable.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "parallax/train/callbacks.hpp"

namespace parallax {

class ProgressBar : public Callback {
 public:
  explicit ProgressBar(std::ostream& out = std::cout, std::optional<bool> terminal = std::nullopt)
      : out_(out), terminal_(terminal.value_or(&out == &std::cout && ::isatty(STDOUT_FILENO))) {}

  void on_fit_begin(const FitInfo& info) override {
    out_ << "training " << info.epochs - info.first_epoch << " epoch(s) of " << info.steps_per_epoch
         << " steps, policy " << info.policy << " (world " << info.world_size << ")\n"
         << std::flush;
  }

  void on_step_end(const StepInfo& step) override {
    const bool last = step.step == step.steps;
    if (terminal_) {
      const auto now = std::chrono::steady_clock::now();
      if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      out_ << '\r' << line(step) << "\033[K" << std::flush;
    } else {
      const int64_t tenth = std::max<int64_t>(1, step.steps / 10);
      if (!last && step.step % tenth != 0) return;
      out_ << line(step) << '\n' << std::flush;
    }
  }

  void on_epoch_end(const EpochMetrics& m, FitControl&) override {
    if (terminal_) out_ << '\n';
    char text[256];
    std::snprintf(
        text, sizeof text,
        "epoch %lld done in %.1fs: train loss %.4f acc %s | val loss %s acc %s | %.1f img/s",
        static_cast<long long>(m.epoch + 1), m.seconds, m.train_loss,
        percent(m.train_accuracy).c_str(), number(m.val_loss).c_str(),
        percent(m.val_accuracy).c_str(), m.images_per_second);
    out_ << text << '\n' << std::flush;
  }

 private:
  static std::string number(double v) {
    if (std::isnan(v)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", v);
    return text;
  }
  static std::string percent(double v) {
    if (std::isnan(v)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.2f%%", 100 * v);
    return text;
  }

  static std::string line(const StepInfo& s) {
    const double rate = s.elapsed_seconds > 0 ? s.samples / s.elapsed_seconds : 0;
    const double eta = s.step > 0 ? s.elapsed_seconds / s.step * (s.steps - s.step) : 0;
    const double loss = s.samples > 0 ? s.loss_sum.item<double>() / s.samples : NAN;
    constexpr int width = 20;
    const int filled = static_cast<int>(width * s.step / std::max<int64_t>(1, s.steps));
    char text[256];
    std::snprintf(text, sizeof text,
                  "epoch %lld/%lld [%s%s] %lld/%lld loss %.4f %.1f img/s ETA %.0fs",
                  static_cast<long long>(s.epoch + 1), static_cast<long long>(s.epochs),
                  std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                  static_cast<long long>(s.step), static_cast<long long>(s.steps), loss, rate, eta);
    return text;
  }

  std::ostream& out_;
  bool terminal_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace parallax
