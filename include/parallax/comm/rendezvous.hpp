// Rendezvous: who am I (rank, world size, local rank) and where is the master, from explicit
// options or the environment of the launcher that started this process (torchrun, mpirun, srun).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

#include <torch/arg.h>

#include "parallax/error.hpp"

namespace parallax {

struct RendezvousOptions {
  /// Explicit values win over the environment.
  TORCH_ARG(std::optional<int64_t>, rank) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, world_size) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, local_rank) = std::nullopt;
  TORCH_ARG(std::optional<std::string>, master_addr) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, master_port) = std::nullopt;
};

struct RendezvousInfo {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// "explicit", "torchrun", "slurm", "mpirun" or "default" (a single process).
  std::string source = "default";
};

namespace detail {

using Environment = std::function<std::optional<std::string>(const std::string&)>;

inline std::optional<std::string> process_environment(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  return value ? std::optional<std::string>(value) : std::nullopt;
}

inline int64_t parse_count(const std::string& name, const std::string& text) {
  std::size_t used = 0;
  long long value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  require(used == text.size() && !text.empty() && value >= 0, "environment variable ", name, "='",
          text, "' is not a non-negative integer");
  return value;
}

}  // namespace detail

/// Resolves the rendezvous. Precedence per field: explicit option, torchrun's variables (RANK,
/// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), mpirun's (Open MPI: OMPI_COMM_WORLD_RANK/
/// SIZE/LOCAL_RANK; MPICH/Hydra: PMI_RANK, PMI_SIZE, MPI_LOCALRANKID), SLURM's (SLURM_PROCID,
/// SLURM_STEP_NUM_TASKS or SLURM_NTASKS, SLURM_LOCALID; Note [Which SLURM variables make a job]),
/// and finally a single process. Under srun and mpirun the master still comes from
/// MASTER_ADDR/MASTER_PORT or the options. Throws InputError naming the variable that is wrong.
///
/// Note [Which SLURM variables make a job]
/// SLURM exports its variables to every process of an allocation, not only to the tasks of an
/// srun step: a batch script's shell sees SLURM_PROCID=0 and SLURM_NTASKS = the allocation's task
/// count, yet it is one process, and the processes it starts inherit both. Taking that for a job
/// made such a process wait forever for ranks nobody launches, and gave every rank of an mpirun
/// inside the allocation rank 0. srun gives the tasks of its step SLURM_STEP_NUM_TASKS (and
/// SLURM_NTASKS, the same count unless --preserve-env), so that is the world size read first.
/// SLURM_NTASKS alone counts only outside a batch job (sbatch sets ENVIRONMENT=BATCH, and every
/// process of the script inherits it), for launchers that set just SLURM_PROCID and SLURM_NTASKS.
/// A launcher nested inside the allocation (torchrun, mpirun) describes this process more closely
/// than what it inherits from SLURM, so its variables come first. One overlap: srun --mpi=pmi2
/// sets PMI_RANK and PMI_SIZE but not MPI_LOCALRANKID; when SLURM's rank and size are the same,
/// SLURM_LOCALID gives the local rank.
inline RendezvousInfo resolve_rendezvous(
    const RendezvousOptions& options = {},
    const detail::Environment& env = detail::process_environment) {
  RendezvousInfo info;
  auto number = [&](const char* name) -> std::optional<int64_t> {
    const auto text = name ? env(name) : std::nullopt;
    return text ? std::optional(detail::parse_count(name, *text)) : std::nullopt;
  };
  detail::require(env("RANK").has_value() == env("WORLD_SIZE").has_value(),
                  "RANK and WORLD_SIZE must be set together (torchrun sets both)");
  const bool batch_job = env("ENVIRONMENT") == std::optional<std::string>("BATCH");
  const char* slurm_world = env("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS"
                            : batch_job                 ? nullptr
                                                        : "SLURM_NTASKS";
  // The first launcher whose rank and size variables are both set wins.
  struct Launcher {
    const char *rank, *world, *local, *source;
  };
  for (const Launcher& launcher :
       {Launcher{"RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"},
        Launcher{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "mpirun"},
        Launcher{"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "mpirun"},
        Launcher{"SLURM_PROCID", slurm_world, "SLURM_LOCALID", "slurm"}}) {
    const auto rank = number(launcher.rank), world = number(launcher.world);
    if (!rank || !world) continue;
    auto local = number(launcher.local);
    if (!local && number("SLURM_PROCID") == rank && number(slurm_world) == world)
      local = number("SLURM_LOCALID");  // srun --mpi=pmi2
    info.rank = *rank;
    info.world_size = *world;
    info.local_rank = local.value_or(0);
    info.source = launcher.source;
    break;
  }
  if (options.rank() || options.world_size()) info.source = "explicit";
  info.rank = options.rank().value_or(info.rank);
  info.world_size = options.world_size().value_or(info.world_size);
  info.local_rank = options.local_rank().value_or(info.local_rank);
  if (const auto addr = env("MASTER_ADDR")) info.master_addr = *addr;
  if (const auto port = number("MASTER_PORT")) info.master_port = *port;
  info.master_addr = options.master_addr().value_or(info.master_addr);
  info.master_port = options.master_port().value_or(info.master_port);
  detail::require(info.world_size >= 1, "world size must be at least 1, got ", info.world_size);
  detail::require(info.rank >= 0 && info.rank < info.world_size, "rank ", info.rank,
                  " is outside world size ", info.world_size);
  detail::require(info.master_port > 0 && info.master_port < 65536, "master port ",
                  info.master_port, " is not a TCP port (1..65535)");
  detail::require(!info.master_addr.empty(), "master address is empty");
  return info;
}

}  // namespace parallax
