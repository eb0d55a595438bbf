// launch_local: starts N ranks of a command on this machine with torchrun's environment (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), forwards SIGINT/SIGTERM to
// them, and fails fast: as soon as one rank exits non-zero (or dies from a signal) the others get
// SIGTERM, then SIGKILL after a grace period. POSIX only; needs no LibTorch.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "parallax/error.hpp"

namespace parallax {

struct LaunchOptions {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  /// 0: pick a free port.
  int master_port = 0;
  /// How long ranks get to exit after SIGTERM before SIGKILL.
  std::chrono::milliseconds grace{5000};
  /// Extra environment for every rank.
  std::map<std::string, std::string> environment;
  /// Where the launcher reports a failing rank (nullptr: silent).
  std::FILE* log = stderr;
};

namespace detail {

inline std::atomic<int> launcher_signal{0};

extern "C" inline void launcher_on_signal(int signal) {
  launcher_signal.store(signal);
}

/// A TCP port that was free a moment ago on `address` (the kernel's choice for port 0).
inline int free_port(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  require(fd >= 0, "cannot create a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1)
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0;
  ::close(fd);
  require(ok, "cannot find a free TCP port on ", address);
  return ntohs(addr.sin_port);
}

/// An exit status as a shell reports it: the code, or 128 + signal.
inline int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace detail

/// Runs `command` as `options.nproc` local ranks; returns 0 when all succeed, else the exit code
/// of the first rank that failed (128 + signal for a signal), or 128 + signal when interrupted.
inline int launch_local(const std::vector<std::string>& command, const LaunchOptions& options) {
  detail::require(!command.empty(), "launch: no command to run");
  detail::require(options.nproc >= 1, "launch: --nproc must be at least 1, got ", options.nproc);
  const int port =
      options.master_port > 0 ? options.master_port : detail::free_port(options.master_addr);
  struct sigaction action {
  }, old_int{}, old_term{};
  action.sa_handler = detail::launcher_on_signal;
  sigemptyset(&action.sa_mask);
  detail::launcher_signal.store(0);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);

  std::vector<pid_t> ranks(static_cast<std::size_t>(options.nproc), -1);
  for (int rank = 0; rank < options.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      const std::map<std::string, std::string> torchrun{
          {"RANK", std::to_string(rank)},
          {"LOCAL_RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(options.nproc)},
          {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
          {"MASTER_ADDR", options.master_addr},
          {"MASTER_PORT", std::to_string(port)}};
      for (const auto& [name, value] : torchrun) ::setenv(name.c_str(), value.c_str(), 1);
      // Like torchrun: ranks share the cores, so unless told otherwise each gets its part
      // instead of every rank starting one OpenMP thread per core.
      if (options.nproc > 1 && !std::getenv("OMP_NUM_THREADS")) {
        const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
        ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1L, cores / options.nproc)).c_str(), 1);
      }
      for (const auto& [name, value] : options.environment)
        ::setenv(name.c_str(), value.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& word : command) argv.push_back(const_cast<char*>(word.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "parallax launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ranks[static_cast<std::size_t>(rank)] = pid;
  }

  auto signal_all = [&](int signal) {
    for (const pid_t pid : ranks)
      if (pid > 0) ::kill(pid, signal);
  };
  int result = 0;
  int running = options.nproc;
  std::chrono::steady_clock::time_point terminate_at{};
  bool terminating = false, killed = false;
  while (running > 0) {
    if (const int signal = detail::launcher_signal.exchange(0); signal != 0) {
      signal_all(signal);
      if (result == 0) result = 128 + signal;
      if (!terminating) terminating = true, terminate_at = std::chrono::steady_clock::now();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (std::size_t rank = 0; rank < ranks.size(); ++rank) {
        if (ranks[rank] != pid) continue;
        ranks[rank] = -1;
        --running;
        const int code = detail::exit_code(status);
        if (code != 0 && result == 0) {
          result = code;
          if (options.log)
            std::fprintf(options.log,
                         "parallax launch: rank %zu exited with code %d; stopping the "
                         "other ranks\n",
                         rank, code);
        }
        if (code != 0 && !terminating) {
          terminating = true;
          terminate_at = std::chrono::steady_clock::now();
          signal_all(SIGTERM);
        }
      }
      continue;
    }
    if (terminating && !killed && std::chrono::steady_clock::now() - terminate_at > options.grace) {
      signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace parallax
