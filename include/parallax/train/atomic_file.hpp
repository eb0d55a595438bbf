// Writing files so that a reader never sees half of one: write a temporary sibling, then rename.
#pragma once

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <system_error>

#include "parallax/error.hpp"

namespace parallax {

/// Calls write(temporary_path), then renames the temporary file over `path` (atomic on POSIX
/// within one file system). On any failure the temporary file is removed and `path` is left as
/// it was.
inline void write_atomically(const std::filesystem::path& path,
                             const std::function<void(const std::filesystem::path&)>& write) {
  namespace fs = std::filesystem;
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path temporary =
      path.string() + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  try {
    write(temporary);
    fs::rename(temporary, path);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
}

/// Writes `text` to `path` atomically.
inline void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw std::runtime_error("parallax: cannot write '" + temporary.string() + "'");
  });
}

}  // namespace parallax
