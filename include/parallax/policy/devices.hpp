// Device choice shared by the policies.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "parallax/config.hpp"
#include "parallax/error.hpp"

#if PARALLAX_HAS_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace parallax {

/// CUDA:0 when a GPU is visible, else the CPU.
inline torch::Device default_device() {
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

/// `device` made concrete and checked: "cuda" without an index means the current CUDA device,
/// as in PyTorch; throws when it cannot be used here (an index beyond the visible ones).
inline torch::Device usable_device(torch::Device device, const std::string& who) {
  if (!device.is_cuda()) return device;
  const auto visible = static_cast<int64_t>(torch::cuda::device_count());
#if PARALLAX_HAS_CUDA
  if (!device.has_index() && visible > 0)
    device = torch::Device(torch::kCUDA, c10::cuda::current_device());
#endif
  detail::require(device.has_index() && device.index() < visible, who, ": device ", device.str(),
                  " is not available (", visible, " CUDA device(s) visible)");
  return device;
}

/// The device of a process with local rank `local_rank` that sees `visible` GPUs: cuda:LOCAL_RANK,
/// as in torchrun's recipe; the CPU when it sees none. One exception: a process that sees a
/// single GPU through CUDA_VISIBLE_DEVICES (`cuda_visible_devices`, the variable's value or
/// null) was given that GPU as its own (`srun --gpus-per-task=1`, or a launcher setting the
/// variable per rank), and takes it as cuda:0. Without the variable, ranks that see one GPU keep
/// cuda:LOCAL_RANK, which usable_device() refuses for all but rank 0: several ranks on one GPU
/// are a mistake to report, not to run into NCCL's "duplicate GPU".
inline torch::Device rank_device(int64_t local_rank, int64_t visible,
                                 const char* cuda_visible_devices) {
  if (visible <= 0) return torch::Device(torch::kCPU);
  const bool given_one = visible == 1 && cuda_visible_devices && *cuda_visible_devices;
  return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(given_one ? 0 : local_rank));
}

/// `count` devices for replicas: cuda:0..count-1 when CUDA is visible, else `count` CPU devices.
inline std::vector<torch::Device> replica_devices(int64_t count, const std::string& who) {
  detail::require(count >= 1, who, ": need at least one replica, got ", count);
  const int64_t visible = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  std::vector<torch::Device> devices;
  if (visible == 0) {
    devices.assign(static_cast<std::size_t>(count), torch::Device(torch::kCPU));
    return devices;
  }
  detail::require(count <= visible, who, ": ", count, " replicas requested but only ", visible,
                  " CUDA device(s) are visible (list devices explicitly; repeats are allowed)");
  for (int64_t i = 0; i < count; ++i)
    devices.emplace_back(torch::kCUDA, static_cast<torch::DeviceIndex>(i));
  return devices;
}

/// A device list as "cpu", "cuda:1" for labels and messages.
inline std::string device_list(const std::vector<torch::Device>& devices) {
  std::string out;
  for (const auto& device : devices) {
    if (!out.empty()) out += ',';
    out += device.str();
  }
  return out;
}

}  // namespace parallax
