// Backend tags: the c10d process groups parallax can run over. Each tag knows whether the found
// LibTorch supports it and how to make its c10d::Backend.
#pragma once

#include <chrono>
#include <string>

#include <torch/torch.h>

#include "parallax/config.hpp"
#include "parallax/error.hpp"

#ifndef PARALLAX_HAS_GLOO
#define PARALLAX_HAS_GLOO 0
#endif
#ifndef PARALLAX_HAS_MPI
#define PARALLAX_HAS_MPI 0
#endif

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#if PARALLAX_HAS_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if PARALLAX_HAS_NCCL
// Note [USE_C10D_NCCL]: ProcessGroupNCCL.hpp compiles to nothing unless USE_C10D_NCCL is defined.
// LibTorch's torch_cuda target exports it; define it here too for builds that include parallax
// without our CMake target.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if PARALLAX_HAS_MPI
#include <torch/csrc/distributed/c10d/ProcessGroupMPI.hpp>
#endif

namespace parallax {

/// Gloo: CPU (and CUDA) tensors over TCP; the backend that runs everywhere.
struct Gloo {
  static constexpr bool available = PARALLAX_HAS_GLOO != 0;
  static constexpr const char* name = "gloo";
  static constexpr const char* missing =
      "this build has no Gloo: LibTorch without USE_C10D_GLOO, or gloo headers not found "
      "(install libgloo-dev or put gloo/ under PARALLAX_DEPS_DIR/include)";
};
/// NCCL: CUDA tensors, one process per GPU.
struct Nccl {
  static constexpr bool available = PARALLAX_HAS_NCCL != 0;
  static constexpr const char* name = "nccl";
  static constexpr const char* missing =
      "the found LibTorch has no NCCL (a CUDA build of LibTorch with c10d NCCL is needed)";
};
/// MPI: processes started by mpirun; rank and size come from MPI itself.
struct Mpi {
  static constexpr bool available = PARALLAX_HAS_MPI != 0;
  static constexpr const char* name = "mpi";
  static constexpr const char* missing =
      "the found LibTorch was built without MPI (USE_C10D_MPI); the pip builds never have it";
};

template <class B>
concept BackendTag = requires {
  { B::available } -> std::convertible_to<bool>;
  { B::name } -> std::convertible_to<const char*>;
};

namespace comm {

/// Makes the c10d backend of tag B for this rank.
template <BackendTag B>
c10::intrusive_ptr<c10d::Backend> make_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int world_size,
                                               std::chrono::milliseconds timeout,
                                               const std::string& master_addr = "") {
  static_assert(B::available,
                "parallax: this backend is not available in the found LibTorch "
                "(see the tag's `missing` text in comm/backend.hpp)");
#if PARALLAX_HAS_GLOO
  if constexpr (std::is_same_v<B, Gloo>) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Loopback jobs stay on loopback; otherwise Gloo picks the interface (GLOO_SOCKET_IFNAME or
    // the host name's address), as torch.distributed does.
    const bool loopback = master_addr.rfind("127.", 0) == 0 || master_addr == "localhost";
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (loopback) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  }
#endif
#if PARALLAX_HAS_NCCL
  if constexpr (std::is_same_v<B, Nccl>) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  }
#endif
#if PARALLAX_HAS_MPI
  if constexpr (std::is_same_v<B, Mpi>) {
    (void)store, (void)rank, (void)world_size, (void)timeout, (void)master_addr;
    return c10d::ProcessGroupMPI::createProcessGroupMPI();
  }
#endif
  throw std::logic_error("parallax: no factory for backend");
}

/// Waits for a collective of `backend`. NCCL: only the current stream waits, as with
/// Work::wait() without a timeout (with one, NCCL blocks the host until the GPU is done; its
/// own timeout and watchdog still apply). Gloo and MPI: the host waits, at most `timeout`.
inline void wait(const c10::intrusive_ptr<c10d::Work>& work, const c10d::Backend& backend,
                 std::chrono::milliseconds timeout) {
  if (backend.getBackendName() == "nccl")
    work->wait();
  else
    work->wait(timeout);
}

}  // namespace comm
}  // namespace parallax
