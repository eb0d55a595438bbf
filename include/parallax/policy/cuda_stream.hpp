// OwnedStream: a CUDA stream that belongs to one owner alone.
//
// torch's stream pool hands out its 32 streams per device and priority round-robin to every
// caller (the loader's copy workers take new ones each epoch), so a pool stream is sooner or
// later shared. The caching allocator keeps freed memory per stream: memory freed into a shared
// stream's cache could go to another user's work before the owner's pending kernels are done
// with it. A stream created here is used by its owner only, and destroyed with it once its
// queued work has finished.
#pragma once

#include "parallax/config.hpp"

#if PARALLAX_HAS_CUDA
#include <optional>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace parallax::detail {

class OwnedStream {
 public:
  /// A new non-blocking stream on CUDA device `device` (it does not wait for the legacy
  /// default stream, like torch's pool streams).
  explicit OwnedStream(c10::DeviceIndex device) {
    c10::cuda::CUDAGuard guard(device);
    cudaStream_t raw = nullptr;
    C10_CUDA_CHECK(cudaStreamCreateWithFlags(&raw, cudaStreamNonBlocking));
    stream_.emplace(c10::cuda::getStreamFromExternal(raw, device));
  }
  ~OwnedStream() {
    c10::cuda::CUDAGuard guard(stream_->device_index());
    // A destructor reports nothing: errors here would be those of earlier work.
    (void)cudaStreamSynchronize(stream_->stream());
    (void)cudaStreamDestroy(stream_->stream());
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;

  c10::cuda::CUDAStream get() const { return *stream_; }

 private:
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
