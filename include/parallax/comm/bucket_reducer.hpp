// BucketReducer: averages gradients across processes in buckets, each bucket's all-reduce
// launched from autograd hooks as soon as all its gradients are ready, so communication overlaps
// the rest of the backward pass.
//
// Note [Bucket order]
// Parameters go into buckets in reverse registration order (backward produces the last layers'
// gradients first); the first bucket is small so communication starts early, the others hold
// up to `cap` bytes. Collectives must be issued in the same order on every rank, while hooks
// may fire in different orders: a ready bucket is launched only after every bucket before it,
// so all ranks issue bucket 0, 1, 2, ... in turn.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include "parallax/comm/backend.hpp"
#include "parallax/comm/bucket_plan.hpp"
#include "parallax/error.hpp"

namespace parallax::comm {

/// Communication hook: how one bucket of gradients is averaged across ranks. The default sums
/// with all-reduce after dividing by the world size; CompressionHook sends fp16/bf16 instead.
class CommHook {
 public:
  virtual ~CommHook() = default;
  /// Starts averaging `flat` (bucket `index`, this rank's gradients) over `world` ranks.
  virtual c10::intrusive_ptr<c10d::Work> launch(std::size_t index, torch::Tensor& flat,
                                                c10d::Backend& backend, int64_t world,
                                                const c10d::AllreduceOptions& options) = 0;
  /// Called once the work has completed: leave the averaged gradients in `flat`.
  virtual void complete(std::size_t /*index*/, torch::Tensor& /*flat*/) {}
};

/// The default: divide by the world size, all-reduce (sum) in place.
class AllReduceHook : public CommHook {
 public:
  c10::intrusive_ptr<c10d::Work> launch(std::size_t, torch::Tensor& flat, c10d::Backend& backend,
                                        int64_t world,
                                        const c10d::AllreduceOptions& options) override {
    flat.div_(static_cast<double>(world));
    std::vector<torch::Tensor> tensors{flat};
    return backend.allreduce(tensors, options);
  }
};

/// Gradient compression: each bucket travels as fp16 or bf16 (half the bytes), and is cast back
/// afterwards, like PyTorch's fp16_compress_hook / bf16_compress_hook.
class CompressionHook : public CommHook {
 public:
  explicit CompressionHook(torch::ScalarType wire = torch::kBFloat16) : wire_(wire) {}
  c10::intrusive_ptr<c10d::Work> launch(std::size_t index, torch::Tensor& flat,
                                        c10d::Backend& backend, int64_t world,
                                        const c10d::AllreduceOptions& options) override {
    if (compressed_.size() <= index) compressed_.resize(index + 1);
    compressed_[index] = flat.div(static_cast<double>(world)).to(wire_);
    std::vector<torch::Tensor> tensors{compressed_[index]};
    return backend.allreduce(tensors, options);
  }
  void complete(std::size_t index, torch::Tensor& flat) override { flat.copy_(compressed_[index]); }

 private:
  torch::ScalarType wire_;
  std::vector<torch::Tensor> compressed_;
};

struct BucketOptions {
  TORCH_ARG(int64_t, cap_bytes) = 25 * 1024 * 1024;
  TORCH_ARG(int64_t, first_cap_bytes) = 1024 * 1024;
  /// Fill gradients of parameters that got none this step with zeros instead of failing.
  TORCH_ARG(bool, find_unused_parameters) = false;
  /// Longest wait for one bucket's all-reduce (a rank that stops answering fails the step).
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::minutes(5);
  /// How buckets are averaged (nullptr: AllReduceHook).
  TORCH_ARG(std::shared_ptr<CommHook>, comm_hook) = nullptr;
  /// false: all buckets are sent after backward (no overlap), for comparison benchmarks.
  TORCH_ARG(bool, overlap) = true;
};

class BucketReducer {
 public:
  BucketReducer(std::vector<torch::Tensor> parameters, std::vector<std::string> names,
                c10::intrusive_ptr<c10d::Backend> backend, BucketOptions options)
      : state_(std::make_shared<State>()) {
    State& s = *state_;
    s.backend = std::move(backend);
    s.world = s.backend->getSize();
    s.find_unused = options.find_unused_parameters();
    s.timeout = options.timeout();
    s.hook = options.comm_hook() ? options.comm_hook() : std::make_shared<AllReduceHook>();
    s.overlap = options.overlap();
    for (const auto& members :
         plan_buckets(parameters, options.cap_bytes(), options.first_cap_bytes())) {
      Bucket& bucket = s.buckets.emplace_back();
      bucket.dtype = parameters[members.front()].scalar_type();
      bucket.device = parameters[members.front()].device();
      for (const auto i : members) {
        const auto& p = parameters[i];
        bucket.members.push_back({p, names[i], bucket.numel});
        bucket.numel += p.numel();
        bucket.bytes += p.numel() * static_cast<int64_t>(p.element_size());
      }
    }
    for (std::size_t b = 0; b < s.buckets.size(); ++b) {
      Bucket& bucket = s.buckets[b];
      bucket.flat = torch::zeros({bucket.numel},
                                 torch::TensorOptions().dtype(bucket.dtype).device(bucket.device));
      for (std::size_t m = 0; m < bucket.members.size(); ++m) {
        torch::autograd::impl::set_post_acc_grad_hooks(bucket.members[m].parameter,
                                                       std::make_unique<Hook>(state_, b, m));
      }
    }
  }
  BucketReducer(const BucketReducer&) = delete;
  BucketReducer& operator=(const BucketReducer&) = delete;
  ~BucketReducer() {
    for (auto& bucket : state_->buckets)
      for (auto& member : bucket.members)
        torch::autograd::impl::set_post_acc_grad_hooks(member.parameter, nullptr);
  }

  /// Before backward: arm every bucket (`enabled` false = no_sync: gradients stay local).
  void prepare(bool enabled) {
    std::lock_guard lock(state_->mutex);
    state_->enabled = enabled;
    state_->next_launch = 0;
    for (auto& bucket : state_->buckets) {
      bucket.pending = static_cast<int64_t>(bucket.members.size());
      bucket.work.reset();
      for (auto& member : bucket.members) member.ready = false;
    }
  }

  /// After backward: launch what is left, wait for every bucket, write averaged gradients.
  void finish() {
    State& s = *state_;
    if (!s.enabled) return;
    {
      std::lock_guard lock(s.mutex);
      for (auto& bucket : s.buckets) {
        for (auto& member : bucket.members) {
          if (member.ready) continue;
          detail::require(
              s.find_unused, "parameter '", member.name,
              "' received no gradient this step; set find_unused_parameters(true) when some "
              "parameters are not used in every forward pass");
          bucket.flat.narrow(0, member.offset, member.parameter.numel()).zero_();
          member.ready = true;
          --bucket.pending;
        }
      }
      s.launch_ready();
    }
    for (std::size_t index = 0; index < s.buckets.size(); ++index) {
      Bucket& bucket = s.buckets[index];
      comm::wait(bucket.work, *s.backend, s.timeout);
      s.hook->complete(index, bucket.flat);
      for (auto& member : bucket.members) {
        auto averaged = bucket.flat.narrow(0, member.offset, member.parameter.numel())
                            .view_as(member.parameter);
        torch::Tensor& grad = member.parameter.mutable_grad();
        if (grad.defined()) {
          grad.copy_(averaged);
        } else {  // in the parameter's layout, as autograd would make it (e.g. channels-last)
          grad = torch::empty_like(member.parameter).copy_(averaged);
        }
      }
    }
  }

  std::size_t bucket_count() const { return state_->buckets.size(); }
  /// Parameters per bucket, in launch order (for tests and the study's projections).
  std::vector<int64_t> bucket_sizes() const {
    std::vector<int64_t> sizes;
    for (const auto& bucket : state_->buckets)
      sizes.push_back(static_cast<int64_t>(bucket.members.size()));
    return sizes;
  }

 private:
  struct Member {
    torch::Tensor parameter;
    std::string name;
    int64_t offset = 0;
    bool ready = false;
  };
  struct Bucket {
    std::vector<Member> members;
    int64_t numel = 0;
    int64_t bytes = 0;
    c10::ScalarType dtype = c10::ScalarType::Float;
    torch::Device device = torch::kCPU;
    torch::Tensor flat;
    int64_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  struct State {
    std::vector<Bucket> buckets;
    c10::intrusive_ptr<c10d::Backend> backend;
    int64_t world = 1;
    bool find_unused = false;
    std::chrono::milliseconds timeout{0};
    std::shared_ptr<CommHook> hook;
    bool overlap = true;
    bool enabled = true;
    std::size_t next_launch = 0;
    std::mutex mutex;

    /// Launches consecutive complete buckets (Note [Bucket order]). Caller holds the mutex.
    void launch_ready() {
      while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
        const std::size_t index = next_launch++;
        c10d::AllreduceOptions options;
        options.timeout = timeout;  // c10d's default would be the backend's 30 minutes
        buckets[index].work = hook->launch(index, buckets[index].flat, *backend, world, options);
      }
    }
  };

  /// Copies a freshly accumulated gradient into its bucket; launches buckets that became ready.
  struct Hook : torch::autograd::PostAccumulateGradHook {
    Hook(std::shared_ptr<State> state, std::size_t bucket, std::size_t member)
        : state(std::move(state)), bucket(bucket), member(member) {}
    void operator()(const torch::autograd::Variable& parameter) override {
      State& s = *state;
      std::lock_guard lock(s.mutex);
      if (!s.enabled) return;
      Bucket& b = s.buckets[bucket];
      Member& m = b.members[member];
      if (m.ready) return;
      b.flat.narrow(0, m.offset, parameter.numel()).copy_(parameter.grad().reshape({-1}));
      m.ready = true;
      if (--b.pending == 0 && s.overlap) s.launch_ready();
    }
    std::shared_ptr<State> state;
    std::size_t bucket;
    std::size_t member;
  };

  std::shared_ptr<State> state_;
};

}  // namespace parallax::comm
