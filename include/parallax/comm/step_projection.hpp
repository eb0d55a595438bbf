// Projected data-parallel step time on more devices than a machine has: an estimate from the
// measured single-device step, the gradient buckets and an all-reduce bus bandwidth.
//
// Note [Projecting data-parallel steps]
// The model, stated so that every number can be checked by hand:
//   * the measured step t splits into forward (1 - b) t and backward b t (b = 2/3: backward
//     costs about twice the forward); the optimizer step is folded into t;
//   * backward makes gradient bytes ready at a uniform rate, in bucket order (plan_buckets), so
//     bucket k is ready at (1 - b) t + b t x (bytes of buckets 0..k) / (all bytes);
//   * buckets are all-reduced one after another (one communication stream); a ring all-reduce
//     of s bytes over n devices takes latency + 2 (n - 1) / n x s / bus bandwidth (nccl-tests'
//     "bus bandwidth": the per-link rate, independent of n);
//   * the step ends when both the compute and the last bucket's all-reduce have finished:
//     t_n = t + max(0, end of the last all-reduce - t).
// Weak scaling (the per-device batch fixed) then gives n x batch / t_n images/s and an
// efficiency t / t_n. It ignores stragglers, contention with compute for memory bandwidth and
// topology (rings across nodes): projections are upper bounds, never measurements.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace parallax::comm {

/// An interconnect class: all-reduce bus bandwidth and per-collective latency.
struct LinkClass {
  std::string name;
  double bus_gigabytes_per_second = 0;
  double latency_microseconds = 20;
};

/// NVLink-class (an 8-GPU NVSwitch node) and PCIe-class (4.0 x16 through the host) defaults.
inline std::vector<LinkClass> default_link_classes() {
  return {{"nvlink", 200.0, 20.0}, {"pcie", 12.0, 30.0}};
}

struct ProjectedStep {
  int64_t devices = 1;
  double step_seconds = 0;        // t_n
  double all_reduce_seconds = 0;  // sum over buckets
  double exposed_seconds = 0;     // t_n - t: communication not hidden behind backward
  double efficiency = 1;          // t / t_n
};

/// t_n for `devices` devices (Note [Projecting data-parallel steps]).
inline ProjectedStep project_step(double step_seconds, const std::vector<int64_t>& bucket_bytes,
                                  int64_t devices, const LinkClass& link,
                                  double backward_fraction = 2.0 / 3.0) {
  ProjectedStep result;
  result.devices = devices;
  result.step_seconds = step_seconds;
  if (devices <= 1 || bucket_bytes.empty()) return result;
  double total = 0;
  for (const auto bytes : bucket_bytes) total += static_cast<double>(bytes);
  const double n = static_cast<double>(devices);
  const double forward = (1 - backward_fraction) * step_seconds;
  const double backward = backward_fraction * step_seconds;
  double ready_bytes = 0, end = 0;
  for (const auto bytes : bucket_bytes) {
    ready_bytes += static_cast<double>(bytes);
    const double ready = forward + backward * (total > 0 ? ready_bytes / total : 1.0);
    const double transfer =
        link.latency_microseconds * 1e-6 +
        2 * (n - 1) / n * static_cast<double>(bytes) / (link.bus_gigabytes_per_second * 1e9);
    end = std::max(end, ready) + transfer;
    result.all_reduce_seconds += transfer;
  }
  result.exposed_seconds = std::max(0.0, end - step_seconds);
  result.step_seconds = step_seconds + result.exposed_seconds;
  result.efficiency = step_seconds / result.step_seconds;
  return result;
}

}  // namespace parallax::comm
