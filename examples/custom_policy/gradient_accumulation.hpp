// GradientAccumulation<Inner, K>: a policy written outside the library. It wraps any other
// policy and runs each batch as K micro-batches, so a batch K times larger than fits in memory
// gives the same update. Nothing in parallax had to change to add it.
#pragma once

#include <algorithm>

#include <parallax/parallax.hpp>

template <parallax::Policy Inner, int K>
class GradientAccumulation {
  static_assert(K >= 1, "GradientAccumulation: K micro-batches, K >= 1");

 public:
  explicit GradientAccumulation(Inner inner = Inner{}) : inner_(std::move(inner)) {}

  // The only method with new logic: micro-batch i back-propagates (n_i / n) x its mean loss,
  // so the accumulated gradient is the gradient of the whole batch's mean loss.
  parallax::StepStats forward_backward(const parallax::Batch& batch,
                                       const parallax::LossFunction& loss,
                                       const parallax::GradScale& grad_scale) {
    const int64_t n = batch.size();
    const int64_t parts = std::min<int64_t>(K, n);
    parallax::StepStats total;
    for (int64_t i = 0, offset = 0; i < parts; ++i) {
      const int64_t size = n / parts + (i < n % parts ? 1 : 0);
      const parallax::Batch micro{batch.input.narrow(0, offset, size),
                                  batch.target.narrow(0, offset, size)};
      total += inner_.forward_backward(micro, loss, grad_scale * (double(size) / double(n)));
      offset += size;
    }
    return total;
  }
  int64_t min_batch() const { return K * inner_.min_batch(); }
  std::string name() const { return "accumulate" + std::to_string(K) + "(" + inner_.name() + ")"; }

  // Everything else is the wrapped policy's business.
  void bind(const parallax::Model& model, const parallax::BindContext& context) {
    inner_.bind(model, context);
  }
  torch::Device input_device() const { return inner_.input_device(); }
  parallax::Shard shard() const { return inner_.shard(); }
  void on_parameters_changed() { inner_.on_parameters_changed(); }
  torch::Tensor forward(const torch::Tensor& input) { return inner_.forward(input); }
  parallax::StepStats reduce(const parallax::StepStats& stats) { return inner_.reduce(stats); }
  void synchronize() { inner_.synchronize(); }
  void set_training(bool on) { inner_.set_training(on); }
  bool is_main() const { return inner_.is_main(); }
  int64_t world_size() const { return inner_.world_size(); }

 private:
  Inner inner_;
};
