// Output paths given on the command line (--out, --json), checked before any work: a command
// that would decode thousands of images or train for an hour first makes sure it can write
// its result, and refuses (exit 2, one line naming the flag) when it cannot.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <parallax/error.hpp>

namespace asl {

namespace fs = std::filesystem;

/// The outermost folder of `path` that does not exist yet (empty when `path` exists): what
/// creating `path` makes, and what to remove to undo it.
inline fs::path first_missing(const fs::path& path) {
  fs::path missing;
  for (fs::path p = fs::absolute(path); !p.empty() && !fs::exists(p); p = p.parent_path()) {
    missing = p;
    if (p == p.parent_path()) break;
  }
  return missing;
}

enum class Output { directory, file };

/// Refuses, with an InputError naming `flag`, an output that cannot be written: a directory
/// (made if missing) or a file (its folder made if missing). Tried for real — the folders made
/// and a probe file written in them — then undone, so nothing is left behind; the command makes
/// them again when it writes. (Asking access(2) instead would not do: it says yes to root even
/// where nothing can be created, as under /proc.)
inline void require_writable_output(const fs::path& path, const std::string& flag, Output kind) {
  const auto refuse = [&](const std::string& why) {
    throw parallax::InputError(flag + " '" + path.string() + "' cannot be written: " + why);
  };
  if (kind == Output::file && fs::is_directory(path)) refuse("it is a directory");
  if (kind == Output::directory && fs::exists(path) && !fs::is_directory(path))
    refuse("it is a file, not a directory");
  const fs::path folder = kind == Output::directory ? path : fs::absolute(path).parent_path();
  const fs::path made = first_missing(folder);
  std::error_code error;
  fs::create_directories(folder, error);
  if (!error && !fs::is_directory(folder)) error = std::make_error_code(std::errc::not_a_directory);
  if (!error) {
    const fs::path probe =
        folder / (".parallax-probe." + std::to_string(static_cast<long long>(::getpid())));
    const int fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0)
      error = std::error_code(errno, std::generic_category());
    else {
      ::close(fd);
      fs::remove(probe, error);
    }
  }
  std::error_code ignored;
  if (!made.empty()) fs::remove_all(made, ignored);
  if (error) refuse(error.message());
}

}  // namespace asl
