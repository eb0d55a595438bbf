// OwnedStream: a CUDA stream that belongs to one owner at a time.
//
// Note [Owned streams]
// torch's stream pool hands out its 32 streams per device and priority round-robin to every
// caller (the loader's copy workers take new ones each epoch), so a pool stream is sooner or
// later shared. The native caching allocator keeps freed memory per stream: memory freed into a
// shared stream's cache could go to another user's work before the owner's pending kernels are
// done with it. A stream taken here is used by its owner alone while the owner lives.
// It is never destroyed, though: what was allocated on it or recorded it outlives its owner (a
// model keeps the last step's gradients), and torch goes back to the stream when that is freed
// (cudaMallocAsync frees on it; a recorded stream gets an event), where a destroyed handle is
// undefined behaviour. Like torch's own pool streams, these live for the process: an owner's end
// returns its stream, once its work is done, to a per-device free list for the next owner. Memory
// the previous owner's tensors freed into the stream's cache may then go to the next owner's
// work, which starts by waiting for its caller's stream: safe when owners on a device are driven
// from the same stream (the Trainer's current stream), as Note [Replica streams] assumes.
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
    TORCH_CHECK(device >= 0, "parallax: OwnedStream needs a CUDA device index, got ", device);
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
    // A destructor reports nothing: errors here would be those of earlier work. A stream that
    // failed, or is left capturing (a capture that could not end), is not handed on.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamSynchronize(stream_->stream()) != cudaSuccess ||
        cudaStreamIsCapturing(stream_->stream(), &capture) != cudaSuccess ||
        capture != cudaStreamCaptureStatusNone)
      return;
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
