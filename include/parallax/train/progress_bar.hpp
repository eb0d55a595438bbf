// ProgressBar: epoch, step, loss, images/s and ETA on the main process. On a terminal one line
// redrawn in place (at most ~10 times a second); otherwise plain lines at every tenth of an
// epoch, so logs stay readable.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>

#include "parallax/train/callbacks.hpp"

namespace parallax {

namespace detail {

/// "[#####...............] 5/20 12.3 img/s ETA 4s": the bar every progress display shares.
inline std::string progress_text(int64_t done, int64_t total, double elapsed_seconds, double rate,
                                 const char* unit) {
  constexpr int width = 20;
  const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
  const double eta =
      done > 0 ? elapsed_seconds / static_cast<double>(done) * static_cast<double>(total - done)
               : 0;
  char text[160];
  std::snprintf(text, sizeof text, "[%s%s] %lld/%lld %.1f %s ETA %.0fs",
                std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                static_cast<long long>(done), static_cast<long long>(total), rate, unit, eta);
  return text;
}

}  // namespace detail

/// A progress line for work that is not a training epoch (decoding, packing): tick() from any
/// thread; redrawn in place on a terminal, a line per tenth otherwise.
class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total, const char* unit = "items/s",
               std::ostream& out = std::cerr)
      : label_(std::move(label)),
        unit_(unit),
        total_(total),
        out_(out),
        terminal_(&out == &std::cerr ? ::isatty(STDERR_FILENO) : false) {}

  void tick() {
    const int64_t done = ++done_;
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() && done != total_) return;
    if (!lock.owns_lock()) lock.lock();
    if (done <= drawn_) return;  // a later count has been drawn already
    const auto now = std::chrono::steady_clock::now();
    const bool last = done == total_;
    if (terminal_) {
      if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
    } else {
      const int64_t tenth = std::max<int64_t>(1, total_ / 10);
      if (!last && done / tenth == drawn_ / tenth) return;
    }
    last_draw_ = now;
    drawn_ = done;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    out_ << (terminal_ ? "\r" : "") << label_ << ' '
         << detail::progress_text(done, total_, elapsed, elapsed > 0 ? done / elapsed : 0.0, unit_)
         << (terminal_ ? "\033[K" : "") << (terminal_ && !last ? "" : "\n") << std::flush;
  }

 private:
  std::string label_;
  const char* unit_;
  int64_t total_;
  std::ostream& out_;
  bool terminal_;
  std::atomic<int64_t> done_{0};
  std::mutex mutex_;
  int64_t drawn_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_draw_{};
};

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
    const double loss = s.samples > 0 ? s.loss_sum.item<double>() / s.samples : NAN;
    const double rate = s.elapsed_seconds > 0 ? s.samples / s.elapsed_seconds : 0;
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld loss %.4f %s",
                  static_cast<long long>(s.epoch + 1), static_cast<long long>(s.epochs), loss,
                  detail::progress_text(s.step, s.steps, s.elapsed_seconds, rate, "img/s").c_str());
    return text;
  }

  std::ostream& out_;
  bool terminal_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace parallax
