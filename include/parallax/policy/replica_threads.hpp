// ReplicaThreads: one persistent thread per extra model replica.
//
// Threads live as long as the policy so that per-thread settings (intra-op thread count, the
// CUDA stream and device guards) are made once, and a step costs two wake-ups instead of thread
// creation. Task 0 runs on the caller's thread; tasks 1..n-1 on the pool.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace parallax::detail {

class ReplicaThreads {
 public:
  /// `count` tasks per run (count - 1 threads); `on_start(i)` runs once on thread i first.
  ReplicaThreads(std::size_t count, std::function<void(std::size_t)> on_start) {
    for (std::size_t i = 1; i < count; ++i) {
      threads_.emplace_back([this, i, on_start] {
        if (on_start) on_start(i);
        loop(i);
      });
    }
  }
  ReplicaThreads(const ReplicaThreads&) = delete;
  ReplicaThreads& operator=(const ReplicaThreads&) = delete;
  ~ReplicaThreads() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    start_.notify_all();
    for (auto& thread : threads_) thread.join();
  }

  /// Runs task(i) for i in [0, active) concurrently (active <= count) and waits for all of
  /// them; rethrows the first exception any task threw.
  void run(std::size_t active, const std::function<void(std::size_t)>& task) {
    {
      std::lock_guard lock(mutex_);
      task_ = &task;
      active_ = active;
      pending_ = active > 0 ? active - 1 : 0;
      errors_.assign(active, nullptr);
      ++generation_;
    }
    start_.notify_all();
    if (active > 0) {
      try {
        task(0);
      } catch (...) {
        errors_[0] = std::current_exception();
      }
    }
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    for (auto& error : errors_)
      if (error) std::rethrow_exception(error);
  }

 private:
  void loop(std::size_t index) {
    std::size_t seen = 0;
    for (;;) {
      const std::function<void(std::size_t)>* task = nullptr;
      {
        std::unique_lock lock(mutex_);
        start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= active_) continue;
        task = task_;
      }
      std::exception_ptr error;
      try {
        (*task)(index);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard lock(mutex_);
        errors_[index] = error;
        --pending_;
      }
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t active_ = 0;
  std::size_t pending_ = 0;
  std::size_t generation_ = 0;
  bool stopping_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace parallax::detail
