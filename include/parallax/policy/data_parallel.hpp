// DataParallel<N>: one process, N model replicas working on slices of every global batch.
//
// Note [Replica 0 is the master]
// The master model (the one the optimizer holds) is also replica 0: it lives on devices[0] and
// runs its slice on the caller's thread, accumulating straight into its own .grad. Replicas
// 1..N-1 are persistent copies, each driven by its own thread (and on CUDA a stream: Note
// [Replica streams]). After their backward passes their gradients are added into the master's,
// the optimizer steps once, and on_parameters_changed() copies parameters and buffers back into
// the replicas. As in PyTorch's nn.DataParallel, buffers (BatchNorm running statistics) follow
// replica 0's slice.
//
// Note [Weighting slices]
// A batch of n examples is split into slices n_0..n_k-1 that differ by at most one. Replica i
// back-propagates (n_i / n) x its slice's mean loss, so the sum of the replicas' gradients equals
// the gradient of the whole batch's mean loss, exactly what Single computes, also when n is not
// a multiple of N. A batch smaller than N (the tail of an epoch) uses only n replicas.
//
// Note [CPU replicas]
// Without CUDA (or with CPU devices listed) replicas live on the CPU, so the whole path runs on
// machines without a GPU. They then share the cores: each replica thread gets
// max(1, threads / N) intra-op threads, restored when the policy is destroyed.
//
// Note [Replica streams]
// On CUDA each replica works on a stream of its own (but see the end of this note), so that
// replicas overlap. (On one GPU less than it seems: the autograd engine launches all backward
// work for a GPU from one thread, so there the replicas' backward passes are queued one after
// the other, and only their forward passes are launched side by side.) The streams are ordered with
// events, never by waiting on the host: before a step each replica's stream waits for what the
// caller's stream on its device (and on the batch's) has queued so far (the batch, the optimizer
// step, parameters copied into the replicas), and after it, even when a replica failed, the
// caller's streams wait for every replica's stream before gradients are summed and outputs
// gathered. Memory a replica's stream allocates and the caller frees is only reused by that stream
// after its next wait, which comes after everything the caller queued until then; so no
// record_stream is needed for it, provided nobody else works on that stream: the streams are the
// policy's own, not torch's shared pool (Note [Owned streams], which also says when one is handed
// on). That reuse rule is the native caching allocator's. Under cudaMallocAsync a free runs on the
// allocating stream and the memory may then go to any stream, while the caller's stream may still
// be reading it (a replica's gradients, outputs, loss); so there the replicas work on the caller's
// streams instead: the same results, without overlap between replicas sharing a GPU.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/comm/local_reduce.hpp"
#include "parallax/config.hpp"
#include "parallax/policy/concept.hpp"
#include "parallax/policy/cuda_stream.hpp"
#include "parallax/policy/devices.hpp"
#include "parallax/policy/replica_threads.hpp"

#if PARALLAX_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace parallax {

struct DataParallelOptions {
  /// Devices for the replicas (repeats allowed); empty: see DataParallel. Overridden by
  /// TrainerOptions::devices.
  TORCH_ARG(std::vector<torch::Device>, devices) = {};
  /// Makes a fresh model for a replica when the module is not torch::nn::Cloneable; its
  /// parameters and buffers are then copied from the master.
  TORCH_ARG(std::function<std::shared_ptr<torch::nn::Module>()>, replica_factory) = nullptr;
  /// Share the intra-op threads among CPU replicas (Note [CPU replicas]).
  TORCH_ARG(bool, divide_cpu_threads) = true;
};

/// N replicas in one process. N = 0: one replica per visible CUDA device (one CPU replica when
/// there is none). N > 0 without explicit devices: cuda:0..N-1 when CUDA is visible, else N
/// CPU replicas.
template <int N>
class DataParallel {
  static_assert(N >= 0, "DataParallel<N>: N is the number of replicas (0: all CUDA devices)");

 public:
  explicit DataParallel(DataParallelOptions options = {})
      : options_(std::move(options)), state_(std::make_unique<State>()) {}
  DataParallel(DataParallel&&) noexcept = default;
  DataParallel& operator=(DataParallel&&) noexcept = default;
  ~DataParallel() {
    if (state_ && state_->saved_threads) at::set_num_threads(*state_->saved_threads);
  }

  void bind(const Model& model, const BindContext& context) {
    State& s = *state_;
    s.devices = choose_devices(context.devices.empty() ? options_.devices() : context.devices);
    for (auto& device : s.devices) device = usable_device(device, name());
    model.module->to(s.devices.front());
    s.replicas = {model};
    for (std::size_t i = 1; i < s.devices.size(); ++i) s.replicas.push_back(make_replica(model, i));
    for (const auto& replica : s.replicas) {
      s.parameters.push_back(replica->parameters());
      s.buffers.push_back(replica->buffers());
    }
    const bool all_cpu = std::ranges::all_of(s.devices, [](auto& d) { return d.is_cpu(); });
    int threads_each = 0;
    if (all_cpu && s.devices.size() > 1 && options_.divide_cpu_threads()) {
      s.saved_threads = at::get_num_threads();
      threads_each = std::max(1, *s.saved_threads / static_cast<int>(s.devices.size()));
      at::set_num_threads(threads_each);
    }
#if PARALLAX_HAS_CUDA
    const bool own_streams = detail::allocator_reuses_per_stream();  // Note [Replica streams]
    for (const auto& device : s.devices)
      s.streams.push_back(device.is_cuda() && own_streams
                              ? std::make_unique<detail::OwnedStream>(device.index())
                              : nullptr);
#endif
    s.threads =
        std::make_unique<detail::ReplicaThreads>(s.devices.size(), [threads_each](std::size_t) {
          if (threads_each > 0) at::set_num_threads(threads_each);
        });
  }

  torch::Device input_device() const {
    // Batches arrive on the first device when every replica is on one device or all are on
    // GPUs: the loader then pins them and copies them there on a side stream, overlapping the
    // step before (data/device_copy.hpp), and replicas on other GPUs copy their slices from
    // there, device to device, as nn.DataParallel scatters from its first GPU. A slice copied
    // from pageable CPU memory instead would make each replica's thread wait, before the copy,
    // for everything its stream had queued. A mix of CPU and CUDA replicas takes CPU batches.
    const auto& devices = state_->devices;
    if (devices.empty()) return torch::Device(torch::kCPU);
    const bool one_device =
        std::ranges::all_of(devices, [&](auto& d) { return d == devices.front(); });
    const bool all_cuda = std::ranges::all_of(devices, [](auto& d) { return d.is_cuda(); });
    return one_device || all_cuda ? devices.front() : torch::Device(torch::kCPU);
  }
  Shard shard() const {
    return {};
  }
  int64_t min_batch() const {
    return replica_count();
  }

  StepStats forward_backward(const Batch& batch, const LossFunction& loss,
                             const GradScale& grad_scale) {
    State& s = *state_;
    const auto slices = slice_sizes(batch.size());
    std::vector<StepStats> stats(slices.size());
    // Each replica's share of the scale, on its device, copied here: on this thread's streams,
    // which the replicas' streams wait for (Note [Replica streams]).
    std::vector<GradScale> weights;
    for (std::size_t i = 0; i < slices.size(); ++i)
      weights.push_back(grad_scale.to(s.devices[i]) *
                        (static_cast<double>(slices[i]) / static_cast<double>(batch.size())));
    for (std::size_t i = 1; i < slices.size(); ++i) comm::clear_gradients(s.parameters[i]);
    run_on_replicas(slices, batch, [&](std::size_t i, const Batch& slice) {
      stats[i] = detail::forward_backward(s.replicas[i], slice, loss, weights[i]);
    });
    for (std::size_t i = 1; i < slices.size(); ++i)
      comm::accumulate_gradients(s.parameters[0], s.parameters[i]);
    StepStats total;
    for (const auto& part : stats) total += part;
    return total;
  }

  void on_parameters_changed() {
    State& s = *state_;
    for (std::size_t i = 1; i < s.replicas.size(); ++i) {
      comm::copy_into(s.parameters[i], s.parameters[0]);
      comm::copy_into(s.buffers[i], s.buffers[0]);
    }
  }

  torch::Tensor forward(const torch::Tensor& input) {
    State& s = *state_;
    const auto slices = slice_sizes(input.size(0));
    std::vector<torch::Tensor> outputs(slices.size());
    run_on_replicas(slices, Batch{input, torch::Tensor()}, [&](std::size_t i, const Batch& slice) {
      torch::NoGradGuard no_grad;
      outputs[i] = s.replicas[i](slice.input);
    });
    for (auto& output : outputs) output = output.to(input.device());
    return torch::cat(outputs);
  }

  StepStats reduce(const StepStats& stats) {
    return stats;
  }
  void synchronize() {}
  void set_training(bool on) {
    for (const auto& replica : state_->replicas) replica->train(on);
  }
  bool is_main() const {
    return true;
  }
  int64_t world_size() const {
    return replica_count();
  }
  std::string name() const {
    return "dp:" + std::to_string(replica_count());
  }
  /// The devices of replicas 0..N-1 (after bind).
  const std::vector<torch::Device>& devices() const {
    return state_->devices;
  }

 private:
  struct State {
    std::vector<torch::Device> devices;
    std::vector<Model> replicas;
    std::vector<std::vector<torch::Tensor>> parameters;
    std::vector<std::vector<torch::Tensor>> buffers;
    std::optional<int> saved_threads;
#if PARALLAX_HAS_CUDA
    // Null: a CPU replica, or one on the caller's stream (Note [Replica streams]).
    std::vector<std::unique_ptr<detail::OwnedStream>> streams;
#endif
    std::unique_ptr<detail::ReplicaThreads> threads;
  };

  /// Replicas after bind; before it, what the options and N promise (0: not known yet).
  int64_t replica_count() const {
    if (!state_->devices.empty()) return static_cast<int64_t>(state_->devices.size());
    return N > 0 ? N : static_cast<int64_t>(options_.devices().size());
  }

  std::vector<torch::Device> choose_devices(const std::vector<torch::Device>& given) const {
    if (!given.empty()) {
      detail::require(N == 0 || static_cast<int64_t>(given.size()) >= N, name(), ": ", N,
                      " replicas requested but only ", given.size(), " device(s) given (",
                      device_list(given), ")");
      detail::require(N == 0 || static_cast<int64_t>(given.size()) == N, name(), ": ", N,
                      " replicas requested but ", given.size(), " devices given (",
                      device_list(given), ")");
      return given;
    }
    const int64_t visible = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
    return replica_devices(N > 0 ? N : std::max<int64_t>(visible, 1), name());
  }

  Model make_replica(const Model& master, std::size_t index) const {
    const torch::Device device = state_->devices[index];
    std::shared_ptr<torch::nn::Module> copy;
    if (options_.replica_factory()) {
      copy = options_.replica_factory()();
      copy->to(device);
      comm::copy_into(copy->parameters(), master->parameters());
      comm::copy_into(copy->buffers(), master->buffers());
    } else {
      try {
        copy = master->clone(device);
      } catch (const c10::Error& error) {
        throw InputError(detail::concat(
            "parallax: ", name(), " cannot replicate module '", master->name(),
            "': it is not torch::nn::Cloneable (derive it from torch::nn::Cloneable<",
            "Impl> or "
            "set DataParallelOptions::replica_factory)"));
      }
    }
    copy->train(master->is_training());
    // clone() makes every parameter require grad again: frozen parameters stay frozen, so
    // replicas do not compute (and the master does not accumulate) gradients nobody applies.
    const auto frozen = master->parameters();
    auto replica = copy->parameters();
    for (std::size_t i = 0; i < frozen.size() && i < replica.size(); ++i)
      replica[i].set_requires_grad(frozen[i].requires_grad());
    return Model{copy, master.forward};
  }

  /// Slice sizes of a batch of n (Note [Weighting slices]).
  std::vector<int64_t> slice_sizes(int64_t n) const {
    const int64_t count = std::min<int64_t>(replica_count(), n);
    std::vector<int64_t> sizes(static_cast<std::size_t>(count), n / count);
    for (int64_t i = 0; i < n % count; ++i) ++sizes[static_cast<std::size_t>(i)];
    return sizes;
  }

  /// Runs body(i, slice_i) on replica i's thread (and CUDA stream: Note [Replica streams]),
  /// slices moved to its device.
  template <class Body>
  void run_on_replicas(const std::vector<int64_t>& sizes, const Batch& batch, Body&& body) {
    State& s = *state_;
    std::vector<int64_t> offsets(sizes.size(), 0);
    for (std::size_t i = 1; i < sizes.size(); ++i) offsets[i] = offsets[i - 1] + sizes[i - 1];
#if PARALLAX_HAS_CUDA
    // Note [Replica streams]: events recorded and waited for on this (the caller's) thread,
    // whose current streams are the ones to order with.
    auto caller_stream = [](const torch::Device& device) {
      return c10::cuda::getCurrentCUDAStream(device.index());
    };
    std::optional<at::cuda::CUDAEvent> batch_ready;  // a CUDA batch, maybe on another device
    if (batch.input.is_cuda()) {
      batch_ready.emplace();
      batch_ready->record(caller_stream(batch.input.device()));
    }
    // Each CUDA replica's stream: its own, or the caller's (taken here: current streams are
    // per thread).
    std::vector<std::optional<c10::cuda::CUDAStream>> streams(sizes.size());
    std::vector<std::optional<at::cuda::CUDAEvent>> ready(sizes.size()), done(sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i)
      if (s.devices[i].is_cuda()) {
        streams[i] = s.streams[i] ? s.streams[i]->get() : caller_stream(s.devices[i]);
        ready[i].emplace();
        ready[i]->record(caller_stream(s.devices[i]));
        done[i].emplace();
      }
    auto wait_for_replicas = [&] {
      for (std::size_t d = 0; d < sizes.size(); ++d)
        if (streams[d])
          for (auto& event : done)
            if (event) event->block(caller_stream(s.devices[d]));
    };
#endif
    auto work = [&](std::size_t i) {
      const torch::Device device = s.devices[i];
#if PARALLAX_HAS_CUDA
      std::optional<c10::cuda::CUDAGuard> device_guard;
      std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
      const std::optional<c10::cuda::CUDAStream>& stream = streams[i];
      if (stream) {
        device_guard.emplace(device.index());
        stream_guard.emplace(*stream);
        ready[i]->block(*stream);
        if (batch_ready) batch_ready->block(*stream);
      }
      // Recorded however the body ends: the caller's streams wait for what it queued.
      struct RecordDone {
        std::optional<at::cuda::CUDAEvent>& event;
        const std::optional<c10::cuda::CUDAStream>& stream;
        ~RecordDone() {
          try {
            if (stream) event->record(*stream);
          } catch (...) {  // CUDA itself failed: the error that follows says so
          }
        }
      } record_done{done[i], stream};
#endif
      auto take = [&](const torch::Tensor& t) {
        if (!t.defined()) return t;
        const auto slice = sizes.size() == 1 ? t : t.narrow(0, offsets[i], sizes[i]);
#if PARALLAX_HAS_CUDA
        // A batch on this GPU came from the caller's stream: keep it until this one is done.
        if (s.streams[i] && slice.device() == device) slice.record_stream(*stream);
#endif
        return slice.to(device, /*non_blocking=*/true);
      };
      body(i, Batch{take(batch.input), take(batch.target)});
    };
#if PARALLAX_HAS_CUDA
    try {
      s.threads->run(sizes.size(), work);
    } catch (...) {
      wait_for_replicas();
      throw;
    }
    wait_for_replicas();
#else
    s.threads->run(sizes.size(), work);
#endif
  }

  DataParallelOptions options_;
  std::unique_ptr<State> state_;
};

static_assert(Policy<DataParallel<2>>);

}  // namespace parallax
