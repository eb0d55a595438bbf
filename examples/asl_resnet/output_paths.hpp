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

/// Whether anything is at `p`: a symbolic link counts, even a dangling one (it is the user's,
/// never ours to create or remove). An unreadable parent reads as nothing: creating it then
/// fails and says why.
inline bool occupied(const fs::path& p) {
  std::error_code error;
  return fs::exists(fs::symlink_status(p, error));
}

/// The outermost folder of `path` that does not exist yet (empty when `path` exists): what
/// creating `path` makes.
inline fs::path first_missing(const fs::path& path) {
  fs::path missing;
  for (fs::path p = fs::absolute(path); !p.empty() && !occupied(p); p = p.parent_path()) {
    missing = p;
    if (p == p.parent_path()) break;
  }
  return missing;
}

/// Undoes the making of folder `path`, whose outermost new folder was `made` (first_missing
/// before it was made; nothing to undo when empty): removes `path` with what is in it, then its
/// parents up to `made` while they are empty — another command may have put its own output
/// beside ours meanwhile (several runs started at once into a new sweep folder).
inline void remove_made(const fs::path& path, const fs::path& made) {
  if (made.empty()) return;
  std::error_code ignored;
  fs::path p = fs::absolute(path);
  fs::remove_all(p, ignored);
  while (p != made && p != p.parent_path()) {
    p = p.parent_path();
    if (!fs::remove(p, ignored)) break;  // not empty, or not there: what is above stays too
  }
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
  std::error_code error;
  const auto status = fs::status(path, error);
  if (kind == Output::file && fs::is_directory(status)) refuse("it is a directory");
  if (kind == Output::file && !path.has_filename()) refuse("a file name cannot end in '/'");
  if (kind == Output::directory && fs::exists(status) && !fs::is_directory(status))
    refuse("it is a file, not a directory");
  const fs::path folder = kind == Output::directory ? path : fs::absolute(path).parent_path();
  const fs::path made = first_missing(folder);
  error.clear();
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
  remove_made(folder, made);
  if (error) refuse(error.message());
}

}  // namespace asl
