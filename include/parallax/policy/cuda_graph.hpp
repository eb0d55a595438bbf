// CudaGraphSingle: Single on one CUDA device, with forward, loss and backward captured once into
// a CUDA graph and replayed for every batch of the same shape.
//
// Note [Capturing the training step]
// At small images a ResNet step is a few hundred short kernels, and launching them costs more
// host time than the GPU needs to run them. A CUDA graph launches them all at once. The recipe
// is PyTorch's "whole network capture": a few eager warm-up steps on a side stream (cuDNN picks
// its algorithms, the allocator settles), then one capture, then replays. What the graph reads
// and writes must stay at fixed addresses: each batch is copied into static input and target
// tensors; gradients are allocated by the captured backward (the Trainer has just set them to
// none) and are handed back to the parameters after each replay, since the Trainer's zero_grad
// drops them again; parameters and optimizer state are updated in place, so the graph sees the
// new values. The loss scale (float16 training) is a device tensor the graph reads, into which
// each replay first copies the LossScaler's current scale, on the device. A graph fits the batch
// shapes and dtypes it was captured with, and also which parameters required gradients and which
// modules were in training mode: a callback that freezes a layer, or puts batch norm into eval
// mode, changes the step, and replaying the old one would go on training the frozen layer (or never
// train an unfrozen one). A step the graph does not fit (the last, partial batch) runs eagerly;
// what two steps in a row share but the graph does not fit is captured anew (the eager step before
// it warmed cuDNN up for that shape), so the short last batch is never captured and a lasting
// change of shape, freezing or mode costs one capture. The optimizer step stays outside
// the graph: with FusedAdam it is a few kernels. The eager steps run on the side stream too, and
// what they leave for the caller's stream (gradients, loss) is freed there: under the native
// caching allocator that memory returns to the side stream, which waits for the caller's before
// its next step; under cudaMallocAsync it may go to any stream (Note [Replica streams] in
// data_parallel.hpp), so there it is recorded as used by the caller's stream, and so are the
// gradients and loss the capture allocated (the caller's stream reads them after each replay,
// and they are freed on the side stream at a recapture or later). The last step's
// gradients outlive the policy, and cudaMallocAsync frees eager ones on the side stream, which
// therefore lives on (Note [Owned streams]).
// Only Single: replica threads (DataParallel) and collectives inside hooks (Distributed) would
// have to be captured too.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "parallax/config.hpp"
#include "parallax/policy/concept.hpp"
#include "parallax/policy/cuda_stream.hpp"
#include "parallax/policy/devices.hpp"
#include "parallax/policy/single.hpp"

#if PARALLAX_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace parallax {

/// Single's device handling, evaluation and bookkeeping; only the training step differs.
class CudaGraphSingle : public Single {
 public:
  /// `device`: a CUDA device (default: cuda:0); `warmup_steps` eager steps before the capture.
  explicit CudaGraphSingle(std::optional<torch::Device> device = std::nullopt,
                           int64_t warmup_steps = 3)
      : Single(device.value_or(torch::Device(torch::kCUDA, 0))),
        requested_(device.value_or(torch::Device(torch::kCUDA, 0))),
        warmup_steps_(warmup_steps) {
    // cuDNN and cuBLAS set themselves up on first use, which a capture must not contain.
    detail::require(warmup_steps >= 1, "CudaGraphSingle needs at least one warm-up step, got ",
                    warmup_steps);
  }

  void bind(const Model& model, const BindContext& context) {
    // Refused before Single::bind moves the model anywhere.
    detail::require(context.devices.size() <= 1, "CudaGraphSingle trains on one device, but ",
                    context.devices.size(), " were given (", device_list(context.devices), ")");
    const torch::Device device = context.devices.empty() ? requested_ : context.devices.front();
    detail::require(device.is_cuda() && PARALLAX_HAS_CUDA, "CUDA graphs need a CUDA device, got ",
                    device.str());
    Single::bind(model, BindContext{{usable_device(device, "CudaGraphSingle")}});
    parameters_ = model.module->parameters();
    modules_ = model.module->modules();
#if PARALLAX_HAS_CUDA
    per_stream_reuse_ = detail::allocator_reuses_per_stream();
#endif
  }

  StepStats forward_backward(const Batch& batch, const LossFunction& loss,
                             const GradScale& grad_scale) {
#if PARALLAX_HAS_CUDA
    // The graph writes gradients, it does not add to them: with gradients already there (a
    // policy accumulating several batches) the step runs eagerly.
    GraphKey key(batch, parameters_, modules_);
    const bool steady = previous_ && *previous_ == key;
    previous_ = key;
    if (no_gradients()) {
      if (graph_ && graph_key_ == key) return replay(batch, grad_scale);
      if (steady && eager_steps_ >= warmup_steps_) return capture(batch, key, loss, grad_scale);
    }
    ++eager_steps_;
    auto stats = on_side_stream([&] { return Single::forward_backward(batch, loss, grad_scale); });
    used_by_caller(stats);
    return stats;
#else
    return Single::forward_backward(batch, loss, grad_scale);
#endif
  }
  /// Parameters updated in place keep the graph; replaced ones (a loaded checkpoint) drop it.
  void on_parameters_changed() {
#if PARALLAX_HAS_CUDA
    if (!graph_) return;
    for (std::size_t i = 0; i < parameters_.size(); ++i)
      if (parameters_[i].data_ptr() != addresses_[i]) {
        graph_.reset();
        return;
      }
#endif
  }
  std::string name() const {
    return "single+graphs";
  }

  /// Steps that replayed a captured graph (the rest ran eagerly).
  int64_t replays() const {
    return replays_;
  }
  /// Graphs captured so far (one more for each lasting change of batch shape).
  int64_t captures() const {
    return captures_;
  }

 private:
#if PARALLAX_HAS_CUDA
  /// What a graph is specialised to: the batch's sizes and dtypes, which parameters want
  /// gradients and which modules train (Note [Capturing the training step]).
  struct GraphKey {
    GraphKey(const Batch& batch, const std::vector<torch::Tensor>& parameters,
             const std::vector<std::shared_ptr<torch::nn::Module>>& modules)
        : input(batch.input.sizes().vec()),
          target(batch.target.defined() ? batch.target.sizes().vec() : std::vector<int64_t>{}),
          input_type(batch.input.scalar_type()),
          target_type(batch.target.defined() ? batch.target.scalar_type()
                                             : c10::ScalarType::Undefined) {
      for (const auto& p : parameters) requires_grad.push_back(p.requires_grad());
      for (const auto& m : modules) training.push_back(m->is_training());
    }
    bool operator==(const GraphKey&) const = default;
    std::vector<int64_t> input, target;
    c10::ScalarType input_type, target_type;
    std::vector<bool> requires_grad, training;
  };

  bool no_gradients() const {
    for (const auto& p : parameters_)
      if (p.grad().defined()) return false;
    return true;
  }

  /// Runs `work` on a side stream ordered after, and before, the current stream's work.
  template <class Work>
  StepStats on_side_stream(Work&& work) {
    const auto current = c10::cuda::getCurrentCUDAStream(input_device().index());
    const auto side = side_stream();
    at::cuda::CUDAEvent before, after;
    before.record(current);
    before.block(side);
    StepStats stats;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      stats = work();
    }
    after.record(side);
    after.block(current);
    return stats;
  }
  /// Note [Capturing the training step]: under cudaMallocAsync, the gradients and step
  /// statistics the side stream allocated are recorded as read by the caller's stream, which
  /// uses them after the step, so that freeing them on the side stream waits for it.
  void used_by_caller(const StepStats& stats) {
    if (per_stream_reuse_) return;
    const auto current = c10::cuda::getCurrentCUDAStream(input_device().index());
    auto record = [&](const torch::Tensor& t) {
      if (!t.defined()) return;
      if (!t.is_sparse()) return t.record_stream(current);
      t._indices().record_stream(current);  // a sparse tensor is its two dense parts
      t._values().record_stream(current);
    };
    for (const auto& p : parameters_) record(p.grad());
    record(stats.loss_sum);
    record(stats.correct);
  }
  /// A stream of the policy's own (Note [Owned streams]): never one of the loader's copy
  /// streams, which must not be the stream being captured.
  c10::cuda::CUDAStream side_stream() {
    if (!side_) side_ = std::make_unique<detail::OwnedStream>(input_device().index());
    return side_->get();
  }

  StepStats capture(const Batch& batch, const GraphKey& key, const LossFunction& loss,
                    const GradScale& grad_scale) {
    graph_.reset();  // a graph for another shape, replaced: its memory pool goes with it
    grads_.clear();
    captured_ = StepStats();
    input_ = batch.input.clone();
    target_ = batch.target.clone();
    scale_ = torch::ones({}, input_.options().dtype(torch::kFloat));  // set by each replay
    graph_factor_.reset();
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      on_side_stream([&] {
        // Thread-local: the loader's workers keep allocating pinned memory (which queries CUDA
        // events) while this thread captures; in global mode that would invalidate the capture.
        bool capturing = false;
        try {
          graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
          capturing = true;
          captured_ =
              detail::forward_backward(model(), Batch{input_, target_}, loss, GradScale(scale_));
          graph->capture_end();
        } catch (...) {
          // Leave capture mode before the first error travels on. A graph whose capture_begin
          // or capture_end failed may still be the allocator's target: it is never destroyed.
          bool ended = false;
          if (capturing) {
            try {
              graph->capture_end();
              ended = true;
            } catch (...) {  // the capture was invalidated: the first error says why
            }
          }
          if (!ended) (void)graph.release();
          throw;
        }
        return captured_;
      });
    } catch (...) {
      for (const auto& p : parameters_) p.mutable_grad().reset();
      throw;
    }
    graph_ = std::move(graph);
    graph_key_ = key;
    ++captures_;
    addresses_.clear();
    for (const auto& p : parameters_) {
      grads_.push_back(p.grad());
      addresses_.push_back(p.data_ptr());
    }
    used_by_caller(captured_);         // the graph's gradients and loss, read after every replay
    return replay(batch, grad_scale);  // capturing ran nothing: this batch runs now
  }

  StepStats replay(const Batch& batch, const GradScale& grad_scale) {
    if (!batch.input.is_same(input_)) input_.copy_(batch.input, /*non_blocking=*/true);
    if (!batch.target.is_same(target_)) target_.copy_(batch.target, /*non_blocking=*/true);
    // The scale the graph multiplies the loss by: a device scale is copied in by a kernel
    // (Note [A scale the host never reads]), a plain factor is written when it changes.
    if (grad_scale.tensor().defined()) {
      scale_.copy_(grad_scale.tensor(), /*non_blocking=*/true);
      if (grad_scale.factor() != 1.0) scale_.mul_(grad_scale.factor());
      graph_factor_.reset();
    } else if (graph_factor_ != grad_scale.factor()) {
      scale_.fill_(grad_scale.factor());
      graph_factor_ = grad_scale.factor();
    }
    graph_->replay();
    ++replays_;
    for (std::size_t i = 0; i < parameters_.size(); ++i)
      if (grads_[i].defined()) parameters_[i].mutable_grad() = grads_[i];
    StepStats stats;  // the graph's outputs are overwritten by the next replay: copy them
    stats.samples = captured_.samples;
    stats.loss_sum = captured_.loss_sum.clone();
    if (captured_.correct.defined()) stats.correct = captured_.correct.clone();
    return stats;
  }

  std::unique_ptr<detail::OwnedStream> side_;
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  std::optional<GraphKey> previous_;  // the last step's key
  std::optional<GraphKey> graph_key_;
  torch::Tensor input_, target_, scale_;
  std::vector<torch::Tensor> grads_;
  std::vector<void*> addresses_;  // parameters' storage when captured
  StepStats captured_;
  std::optional<double> graph_factor_;  // the plain factor scale_ holds, if it holds one
  bool per_stream_reuse_ = true;        // the native caching allocator (policy/cuda_stream.hpp)
#endif
  torch::Device requested_;
  int64_t warmup_steps_;
  int64_t eager_steps_ = 0;
  int64_t replays_ = 0;
  int64_t captures_ = 0;
  std::vector<torch::Tensor> parameters_;
  std::vector<std::shared_ptr<torch::nn::Module>> modules_;
};

static_assert(Policy<CudaGraphSingle>);

}  // namespace parallax
