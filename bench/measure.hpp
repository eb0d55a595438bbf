// Shared by the benchmarks: candidates measured interleaved in rotating order (so warm-up and
// machine noise fall on each in turn), medians, and a markdown table.
#pragma once

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace bench {

struct Candidate {
  std::string label;
  std::function<double()> run;  // one measurement, e.g. images/s of one epoch
  std::vector<double> results;
};

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/// Runs every candidate `repeats` times; repetition r starts with candidate r mod n.
inline void measure_interleaved(std::vector<Candidate>& candidates, int repeats, bool progress) {
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t k = 0; k < candidates.size(); ++k) {
      auto& candidate = candidates[(static_cast<std::size_t>(r) + k) % candidates.size()];
      candidate.results.push_back(candidate.run());
    }
    if (progress) std::fprintf(stderr, "repeat %d/%d done\n", r + 1, repeats);
  }
}

/// | label | median | ratio to the first candidate |
inline void print_table(const std::vector<Candidate>& candidates, const char* unit) {
  const double base = median(candidates.front().results);
  std::printf("| configuration | %s (median) | vs first row |\n|---|---:|---:|\n", unit);
  for (const auto& c : candidates)
    std::printf("| %s | %.0f | %.2fx |\n", c.label.c_str(), median(c.results),
                median(c.results) / base);
}

}  // namespace bench
