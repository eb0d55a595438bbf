// Loader: batches of a random-access dataset, prefetched by worker threads into a bounded window.
//
// Note [Bounded prefetch]
// Workers claim batch numbers in order and may run ahead of the consumer by at most `prefetch`
// batches: a worker waits before claiming batch k until k < delivered + prefetch. Batches are
// handed out strictly in order, whatever order workers finish in. So at most `prefetch` collated
// batches exist besides the one the consumer holds: memory is bounded by prefetch x batch bytes,
// independent of the number of workers (workers beyond `prefetch` simply wait).
#pragma once

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/data/batch_memory.hpp"
#include "parallax/data/collate.hpp"
#include "parallax/data/dataset.hpp"
#include "parallax/data/device_copy.hpp"
#include "parallax/data/index_pipeline.hpp"
#include "parallax/data/shard.hpp"

namespace parallax {

struct LoaderOptions {
  /// Examples per batch (of this shard).
  TORCH_ARG(int64_t, batch_size) = 32;
  /// Reorder every epoch (a permutation seeded with seed + epoch).
  TORCH_ARG(bool, shuffle) = true;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Drop the tail instead of padding shards and keeping a partial last batch.
  TORCH_ARG(bool, drop_last) = false;
  /// The part of each epoch this loader yields.
  TORCH_ARG(Shard, shard) = {};
  /// Worker threads collating batches; 0 collates on the consumer's thread.
  TORCH_ARG(int64_t, workers) = 2;
  /// Most batches prepared ahead of the consumer (see Note [Bounded prefetch]).
  TORCH_ARG(int64_t, prefetch) = 4;
  /// Where batches are delivered; CUDA targets get pinned batches and non_blocking copies.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  TORCH_ARG(bool, pin_memory) = true;
  /// Workers copy CUDA batches on side streams, overlapping the current step (Note [Copying
  /// batches on a side stream]); false: copied on the consumer's stream when taken.
  TORCH_ARG(bool, copy_on_side_stream) = true;
};

namespace detail {

/// One epoch's batches, produced by workers and consumed in order.
template <RandomAccessDataset D>
class EpochStream {
 public:
  EpochStream(D& dataset, std::vector<Indices> batches, const LoaderOptions& options,
              std::shared_ptr<BatchMemory> memory)
      : dataset_(dataset),
        batches_(std::move(batches)),
        options_(options),
        memory_(std::move(memory)) {
    side_stream_ =
        options.device().is_cuda() && options.copy_on_side_stream() && torch::cuda::is_available();
    const auto workers = static_cast<std::size_t>(options.workers());
    for (std::size_t w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  EpochStream(const EpochStream&) = delete;
  EpochStream& operator=(const EpochStream&) = delete;
  ~EpochStream() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    space_.notify_all();
    for (auto& thread : threads_) thread.join();
  }

  int64_t size() const { return static_cast<int64_t>(batches_.size()); }

  /// The next batch on the target device, or an undefined Batch at the end of the epoch.
  Batch next() {
    if (delivered_ >= size()) return {};
    if (threads_.empty()) {
      Batch batch = collate(dataset_, batches_[static_cast<std::size_t>(delivered_)], *memory_);
      max_outstanding_ = 1;
      ++delivered_;
      return on_device(std::move(batch));
    } else {
      std::unique_lock lock(mutex_);
      ready_signal_.wait(lock, [&] { return ready_.contains(delivered_); });
      auto node = ready_.extract(delivered_);
      ++delivered_;
      lock.unlock();
      space_.notify_all();
      if (node.mapped().error) std::rethrow_exception(node.mapped().error);
      return on_device(std::move(node.mapped().batch).ready_on_current_stream());
    }
  }

  /// The most batches claimed by workers and not yet consumed at any moment of this epoch.
  int64_t max_outstanding() const {
    std::lock_guard lock(mutex_);
    return max_outstanding_;
  }

 private:
  /// `batch` on the target device, copied here (on the caller's stream) unless a worker did.
  Batch on_device(Batch batch) const {
    return BatchCopier(options_.device(), false).copy(std::move(batch), memory_->pinned()).batch;
  }

  struct Slot {
    DeviceBatch batch;
    std::exception_ptr error;
  };

  void work() {
    // Workers copy to the device only on side streams; otherwise next() copies on the caller's.
    const BatchCopier copier(options_.device(), side_stream_);
    for (;;) {
      int64_t claimed = 0;
      {
        std::unique_lock lock(mutex_);
        space_.wait(lock, [&] {
          return stopping_ || claimed_ >= size() || claimed_ < delivered_ + options_.prefetch();
        });
        if (stopping_ || claimed_ >= size()) return;
        claimed = claimed_++;
        max_outstanding_ = std::max(max_outstanding_, claimed_ - delivered_);
      }
      Slot slot;
      try {
        Batch batch = collate(dataset_, batches_[static_cast<std::size_t>(claimed)], *memory_);
        if (side_stream_)
          slot.batch = copier.copy(std::move(batch), memory_->pinned());
        else
          slot.batch.batch = std::move(batch);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard lock(mutex_);
        ready_.emplace(claimed, std::move(slot));
      }
      ready_signal_.notify_all();
    }
  }

  D& dataset_;
  std::vector<Indices> batches_;
  LoaderOptions options_;
  std::shared_ptr<BatchMemory> memory_;
  bool side_stream_ = false;
  mutable std::mutex mutex_;
  std::condition_variable space_;
  std::condition_variable ready_signal_;
  std::map<int64_t, Slot> ready_;
  int64_t claimed_ = 0;
  int64_t delivered_ = 0;
  int64_t max_outstanding_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace detail

/// Batches of any random-access dataset: `for (Batch& b : loader.epoch(e)) ...`.
template <RandomAccessDataset D>
class Loader {
 public:
  Loader(D& dataset, LoaderOptions options) : dataset_(dataset), options_(std::move(options)) {
    size_ = checked_size(dataset_);
    detail::require(options_.batch_size() >= 1, "batch size must be at least 1, got ",
                    options_.batch_size());
    detail::require(options_.workers() >= 0, "workers must be >= 0, got ", options_.workers());
    detail::require(options_.prefetch() >= 1, "prefetch must be >= 1, got ", options_.prefetch());
    detail::require(batches_per_epoch() >= 1, "dataset of ", size_, " examples makes no batch of ",
                    options_.batch_size(), " for shard ", options_.shard().rank, "/",
                    options_.shard().world, " with drop_last");
    // Enough for every batch that can be alive at once (Note [Bounded prefetch]), input and
    // target each, plus the consumer's current and previous batch.
    const auto in_flight = static_cast<std::size_t>(options_.prefetch() + options_.workers() + 2);
    memory_ = std::make_shared<BatchMemory>(
        options_.device().is_cuda() && options_.pin_memory() && torch::cuda::is_available(),
        2 * in_flight);
  }

  const LoaderOptions& options() const { return options_; }
  /// Examples in the whole dataset.
  int64_t dataset_size() const { return size_; }
  /// Examples this shard yields per epoch (including any wrap-around padding).
  int64_t samples_per_epoch() const {
    const int64_t length = shard_length(size_, options_.shard().world, options_.drop_last());
    return options_.drop_last() ? batches_per_epoch() * options_.batch_size() : length;
  }
  int64_t batches_per_epoch() const {
    return batch_count(shard_length(size_, options_.shard().world, options_.drop_last()),
                       options_.batch_size(), options_.drop_last());
  }

  /// The index batches of `epoch` for this shard (what the workers will collate).
  std::vector<Indices> plan(int64_t epoch) const {
    const Indices order = epoch_order(size_, options_.seed(), epoch, options_.shuffle());
    return batch_indices(shard_indices(order, options_.shard(), options_.drop_last()),
                         options_.batch_size(), options_.drop_last());
  }

  class Epoch;
  /// Starts the workers for `epoch`; they stop when the returned range is destroyed.
  Epoch epoch(int64_t epoch) { return Epoch(dataset_, plan(epoch), options_, memory_); }

  /// Where batches are allocated (host batches are recycled: Note [Recycling batch memory]).
  const BatchMemory& memory() const { return *memory_; }

 private:
  D& dataset_;
  LoaderOptions options_;
  std::shared_ptr<BatchMemory> memory_;
  int64_t size_ = 0;
};

/// A single pass over one epoch's batches (an input range).
template <RandomAccessDataset D>
class Loader<D>::Epoch {
 public:
  Epoch(D& dataset, std::vector<Indices> batches, const LoaderOptions& options,
        std::shared_ptr<BatchMemory> memory)
      : stream_(std::make_unique<detail::EpochStream<D>>(dataset, std::move(batches), options,
                                                         std::move(memory))) {}

  class iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(detail::EpochStream<D>* stream) : stream_(stream) { ++*this; }
    Batch& operator*() { return current_; }
    iterator& operator++() {
      current_ = stream_->next();
      if (!current_.input.defined()) stream_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& a, const iterator& b) { return a.stream_ == b.stream_; }

   private:
    detail::EpochStream<D>* stream_ = nullptr;
    Batch current_;
  };

  iterator begin() { return iterator(stream_.get()); }
  iterator end() { return iterator(); }
  int64_t size() const { return stream_->size(); }
  int64_t max_outstanding() const { return stream_->max_outstanding(); }

 private:
  std::unique_ptr<detail::EpochStream<D>> stream_;
};

}  // namespace parallax
