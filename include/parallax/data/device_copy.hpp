// Moving collated batches to the training device, off the consumer's critical path.
//
// Note [Copying batches on a side stream]
// A non_blocking copy issued on the compute stream still waits for every kernel queued before
// it, so batch k+1 would only start moving once step k is done. Instead each loader worker
// copies its pinned batch on its own CUDA stream (from torch's pool) as soon as it is collated
// and records an event. The consumer makes its current stream wait for that event (no host
// wait) and calls record_stream: the batch's device memory was allocated on the worker's
// stream, and without it the caching allocator could hand those bytes to the worker's next
// batch while kernels queued on the compute stream still read them. The pinned host buffer
// may be dropped at once: torch's host allocator keeps it until the copy's own event fires.
#pragma once

#include <optional>

#include <torch/torch.h>

#include "parallax/config.hpp"
#include "parallax/data/batch.hpp"

#if PARALLAX_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace parallax::detail {

/// A batch on its way to a device: usable once ready_on_current_stream() has run.
struct DeviceBatch {
  Batch batch;
#if PARALLAX_HAS_CUDA
  std::optional<at::cuda::CUDAEvent> copied;  // set when copied on a side stream
#endif

  /// Orders the current stream after the copy (see the Note) and returns the batch.
  Batch ready_on_current_stream() && {
#if PARALLAX_HAS_CUDA
    if (copied) {
      const auto stream = c10::cuda::getCurrentCUDAStream(batch.input.device().index());
      copied->block(stream);
      batch.input.record_stream(stream);
      if (batch.target.defined() && batch.target.is_cuda()) batch.target.record_stream(stream);
    }
#endif
    return std::move(batch);
  }
};

/// Copies batches to `device`: on a CUDA device on a side stream of its own (one per loader
/// worker), elsewhere with a plain copy.
class BatchCopier {
 public:
  BatchCopier(torch::Device device, bool side_stream) : device_(device) {
#if PARALLAX_HAS_CUDA
    if (side_stream && device.is_cuda())
      stream_.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index()));
#else
    (void)side_stream;
#endif
  }

  /// `batch` on the device; `non_blocking` when the host side is pinned.
  DeviceBatch copy(Batch batch, bool non_blocking) const {
    DeviceBatch result;
    const bool target_there = !batch.target.defined() || batch.target.device() == device_;
    if (batch.input.device() == device_ && target_there) {
      result.batch = std::move(batch);
      return result;
    }
#if PARALLAX_HAS_CUDA
    std::optional<c10::cuda::CUDAStreamGuard> on_side_stream;
    if (stream_) on_side_stream.emplace(*stream_);
#endif
    result.batch.input = batch.input.to(device_, non_blocking);
    result.batch.target =
        batch.target.defined() ? batch.target.to(device_, non_blocking) : batch.target;
#if PARALLAX_HAS_CUDA
    if (stream_) {
      result.copied.emplace();
      result.copied->record(*stream_);
    }
#endif
    return result;
  }

 private:
  torch::Device device_;
#if PARALLAX_HAS_CUDA
  std::optional<c10::cuda::CUDAStream> stream_;
#endif
};

}  // namespace parallax::detail
