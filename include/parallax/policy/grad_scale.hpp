// GradScale: what a policy multiplies a batch's mean loss by before backward.
//
// Note [A scale the host never reads]
// Without loss scaling the factor is a plain number (a replica's or micro-batch's share of the
// batch: Note [Weighting slices]). With it, the LossScaler's scale is a 0-dim tensor on the
// model's device that kernels update after every step (Note [Dynamic loss scaling]), like
// torch.amp.GradScaler's: were it handed over as a double, the host would have to wait for the
// GPU at every step to read it. So a GradScale is a host factor times, optionally, that device
// tensor; policies multiply it by their own factors and move it to their replicas' devices, and
// the loss is multiplied by it on the device.
#pragma once

#include <utility>

#include <torch/torch.h>

namespace parallax {

class GradScale {
 public:
  /// A plain factor (1: the loss as it is). Implicit: a number is a scale.
  GradScale(double factor = 1.0) : factor_(factor) {}  // NOLINT(google-explicit-constructor)
  /// `factor` x `scale`, a 0-dim float tensor read by kernels only.
  explicit GradScale(torch::Tensor scale, double factor = 1.0)
      : scale_(std::move(scale)), factor_(factor) {}

  /// The host factor.
  double factor() const { return factor_; }
  /// The device part; undefined without loss scaling.
  const torch::Tensor& tensor() const { return scale_; }

  friend GradScale operator*(const GradScale& scale, double factor) {
    return GradScale(scale.scale_, scale.factor_ * factor);
  }
  friend GradScale operator*(double factor, const GradScale& scale) { return scale * factor; }

  /// The same scale with its tensor on `device` (a replica's). Call it on the thread, and so
  /// with the streams, that wrote the tensor: a copy between GPUs is ordered after the work
  /// queued on both devices' current streams.
  GradScale to(const torch::Device& device) const {
    if (!scale_.defined() || scale_.device() == device) return *this;
    // Host to device and device to device need no wait; device to host must wait.
    return GradScale(scale_.to(device, /*non_blocking=*/device.is_cuda()), factor_);
  }

  /// `loss` x this scale.
  torch::Tensor apply(const torch::Tensor& loss) const {
    const torch::Tensor scaled = factor_ == 1.0 ? loss : loss * factor_;
    return scale_.defined() ? scaled * to(loss.device()).scale_ : scaled;
  }

 private:
  torch::Tensor scale_;
  double factor_ = 1.0;
};

}  // namespace parallax
