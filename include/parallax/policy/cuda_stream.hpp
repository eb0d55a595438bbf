// OwnedStream: a CUDA stream that belongs to one owner at a time.
//
// Note [Owned streams]
// torch's stream pool hands out its 32 streams per device and priority round-robin to every
// caller (the loader's copy workers take new ones each epoch), so a pool stream is sooner or
// later shared. The native caching allocator keeps freed memory per stream: memory freed into a
// shared stream's cache could go to another user's work before the owner's pending kernels are
// done with it. A stream taken here is used by its owner alone while the owner lives.
// It is never destroyed, though: memory allocated on it outlives its owner (a model keeps the
// last step's gradients), and torch's allocators go back to that stream when it is freed
// (cudaMallocAsync frees on it, recorded streams get events), where a destroyed handle would
// fail inside a tensor's deleter. Like torch's own pool streams, these live for the process;
// an owner's end returns its stream (its work finished) to a per-device free list for the next.
#pragma once

#include "parallax/config.hpp"

#if PARALLAX_HAS_CUDA
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace parallax::detail {

class OwnedStream {
 public:
  /// A non-blocking stream on CUDA device `device` (it does not wait for the legacy default
  /// stream, like torch's pool streams) that nobody else holds.
  explicit OwnedStream(c10::DeviceIndex device) {
    cudaStream_t raw = nullptr;
    {
      std::lock_guard lock(free_streams().mutex);
      auto& spare = free_streams().by_device[device];
      if (!spare.empty()) {
        raw = spare.back();
        spare.pop_back();
      }
    }
    if (!raw) {
      c10::cuda::CUDAGuard guard(device);
      C10_CUDA_CHECK(cudaStreamCreateWithFlags(&raw, cudaStreamNonBlocking));
    }
    stream_.emplace(c10::cuda::getStreamFromExternal(raw, device));
  }
  ~OwnedStream() {
    c10::cuda::CUDAGuard guard(stream_->device_index());
    // A destructor reports nothing: errors here would be those of earlier work.
    (void)cudaStreamSynchronize(stream_->stream());
    try {
      std::lock_guard lock(free_streams().mutex);
      free_streams().by_device[stream_->device_index()].push_back(stream_->stream());
    } catch (...) {  // no memory to remember it: the stream stays unused
    }
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;

  c10::cuda::CUDAStream get() const { return *stream_; }

 private:
  struct FreeStreams {
    std::mutex mutex;
    std::map<c10::DeviceIndex, std::vector<cudaStream_t>> by_device;
  };
  static FreeStreams& free_streams() {
    static FreeStreams* streams = new FreeStreams();  // never destroyed, as the streams
    return *streams;
  }

  std::optional<c10::cuda::CUDAStream> stream_;
};

/// Whether torch's CUDA allocator is its native caching allocator, which gives freed memory
/// back only to work on the stream that allocated it. Its other backend, cudaMallocAsync
/// (PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync), and pluggable allocators may hand it to
/// any stream once the free has run on the allocating one, whatever other streams still read.
inline bool allocator_reuses_per_stream() {
  return c10::cuda::CUDACachingAllocator::name() == "native";
}

}  // namespace parallax::detail
#endif
