// parallax-run: start N local ranks of a program with torchrun's environment.
//
//   parallax-run --nproc N [--master-addr ADDR] [--master-port PORT] [--] PROGRAM [ARGS...]
//
// Exit code: 0 when every rank succeeds; the first failing rank's code otherwise (128 + signal
// for a signal); 2 for bad usage.
#include <cstdio>
#include <string>
#include <vector>

#include "parallax/comm/launcher.hpp"

namespace {

const char* const usage =
    "usage: parallax-run --nproc N [--master-addr ADDR] [--master-port PORT] [--] PROGRAM "
    "[ARGS...]\n"
    "Starts N local ranks of PROGRAM with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,\n"
    "LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; OMP_NUM_THREADS = cores / N unless set). The\n"
    "first rank that fails stops the others; the exit code is its code.\n";

}  // namespace

int main(int argc, char** argv) {
  parallax::LaunchOptions options;
  std::vector<std::string> command;
  try {
    int i = 1;
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= argc) throw parallax::InputError("parallax-run: " + flag + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& flag) {
      const std::string text = value(flag);
      std::size_t used = 0;
      int n = -1;
      try {
        n = std::stoi(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != text.size() || n < 0)
        throw parallax::InputError("parallax-run: " + flag + " expects a number, got '" + text +
                                   "'");
      return n;
    };
    for (; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::printf("%s", usage);
        return 0;
      }
      if (arg == "--nproc" || arg == "--nproc-per-node")
        options.nproc = number(arg);
      else if (arg == "--master-addr")
        options.master_addr = value(arg);
      else if (arg == "--master-port")
        options.master_port = number(arg);
      else if (arg == "--") {
        ++i;
        break;
      } else if (arg.rfind("--", 0) == 0)
        throw parallax::InputError("parallax-run: unknown flag " + arg);
      else
        break;
    }
    for (; i < argc; ++i) command.emplace_back(argv[i]);
    if (command.empty())
      throw parallax::InputError(
          "parallax-run: no program given (usage: parallax-run --nproc N PROGRAM [ARGS...]; "
          "--help)");
    return parallax::launch_local(command, options);
  } catch (const parallax::InputError& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 2;
  }
}
