// Errors parallax reports to its users: one line, naming the thing that is wrong.
#pragma once

#include <exception>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace parallax {

/// Bad input or usage (a flag, a file, an option): programs map it to exit code 2.
class InputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

/// Throws InputError("parallax: <parts...>") when `condition` is false.
template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) throw InputError(concat("parallax: ", std::forward<Parts>(parts)...));
}

/// The first line of an exception message (c10::Error carries a C++ backtrace after it).
inline std::string first_line(const std::string& message) {
  return message.substr(0, message.find('\n'));
}

/// first_line without our "parallax: " prefix, for quoting one error inside another.
inline std::string quoted_message(const std::string& message) {
  std::string line = first_line(message);
  const std::string prefix = "parallax: ";
  return line.rfind(prefix, 0) == 0 ? line.substr(prefix.size()) : line;
}

}  // namespace detail

/// Runs a program's body with the exit-code contract: its return value on success, 2 with one
/// line on stderr for bad input (InputError), 1 with the first line of the message otherwise.
///   int main(int argc, char** argv) { return parallax::guarded_main([&] { ...; return 0; }); }
template <class Body>
int guarded_main(Body&& body) {
  try {
    return body();
  } catch (const InputError& error) {
    std::cerr << error.what() << '\n';
    return 2;
  } catch (const std::exception& error) {
    std::cerr << detail::first_line(error.what()) << '\n';
    return 1;
  }
}

}  // namespace parallax
