// Which part of every epoch this process (or replica group) sees.
#pragma once

#include <cstdint>

namespace parallax {

/// Rank `rank` of `world`: each rank gets every world-th index of the epoch order (the
/// torch.utils.data.DistributedSampler split). Single and DataParallel use the whole {0, 1}.
struct Shard {
  int64_t rank = 0;
  int64_t world = 1;

  friend bool operator==(const Shard&, const Shard&) = default;
};

}  // namespace parallax
