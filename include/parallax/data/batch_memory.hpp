// BatchMemory: where collated batches are allocated — page-locked for CUDA targets, otherwise
// host buffers recycled from earlier batches.
//
// Note [Recycling batch memory]
// A batch of 32 RGB 64-px images is 1.5 MB of floats. Allocated afresh for every batch, such
// blocks keep going back to the kernel when freed (glibc trims or unmaps them), and the next
// batch pays about 380 page faults, each clearing a page, before a byte is written: on the packed
// cache that was as much time as the copying itself. BatchMemory keeps the tensors of the last
// few batches and hands one out again once nothing else refers to it: the tensor and its storage
// are held only here (no consumer, no view of it, no autograd graph that saved it), and it does
// not require grad. The memory is then written over completely by the next batch. Pinned
// batches are never recycled here: a non_blocking copy to the GPU may still be reading one after
// its tensor is gone, which torch's caching host allocator tracks with events (and it caches
// already).
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <vector>

#include <torch/torch.h>

namespace parallax {

class BatchMemory {
 public:
  /// `pinned`: page-locked memory (for CUDA targets; not recycled). `keep`: the most tensors kept
  /// for reuse (the Loader keeps enough for every batch in flight, input and target).
  explicit BatchMemory(bool pinned = false, std::size_t keep = 16) : pinned_(pinned), keep_(keep) {}
  BatchMemory(const BatchMemory&) = delete;
  BatchMemory& operator=(const BatchMemory&) = delete;

  bool pinned() const { return pinned_; }

  /// An uninitialised tensor of `shape` and `dtype`: the caller writes every element.
  torch::Tensor empty(torch::IntArrayRef shape, torch::ScalarType dtype) {
    const auto options = torch::TensorOptions().dtype(dtype);
    if (pinned_) return torch::empty(shape, options.pinned_memory(true));
    std::lock_guard lock(mutex_);
    std::optional<std::size_t> free_slot;
    for (std::size_t i = 0; i < kept_.size(); ++i) {
      if (!unused(kept_[i])) continue;
      if (kept_[i].sizes() == shape && kept_[i].scalar_type() == dtype) {
        // use_count() is a relaxed load: order our coming writes after the other thread's
        // last reads, which its (acq_rel) decrement released.
        std::atomic_thread_fence(std::memory_order_acquire);
        ++reused_;
        return kept_[i];
      }
      free_slot = i;
    }
    auto fresh = torch::empty(shape, options);
    if (kept_.size() < keep_)
      kept_.push_back(fresh);
    else if (free_slot)
      kept_[*free_slot] = fresh;  // an unused tensor of another shape (a last, short batch)
    return fresh;
  }

  /// How many tensors were handed out again instead of allocated.
  int64_t reused() const {
    std::lock_guard lock(mutex_);
    return reused_;
  }

 private:
  // Only the thread that holds the last other reference can drop it, and nobody can take a new
  // one from nothing: a count of 1 read here stays 1.
  static bool unused(const torch::Tensor& tensor) {
    return tensor.use_count() == 1 && tensor.storage().use_count() == 1 && !tensor.requires_grad();
  }

  bool pinned_;
  std::size_t keep_;
  mutable std::mutex mutex_;
  std::vector<torch::Tensor> kept_;
  int64_t reused_ = 0;
};

}  // namespace parallax
