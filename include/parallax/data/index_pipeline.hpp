// The index pipeline of one epoch: order -> shard -> batches, each stage a small range-v3 view.
//
// Note [Sampler semantics]
// The stages reproduce torch.utils.data.DistributedSampler followed by a DataLoader batch sampler,
// so a parallax rank sees exactly the indices a PyTorch rank would for the same seed and epoch:
//  * order:  torch.randperm(n, generator seeded with seed + epoch), or 0..n-1 without shuffling;
//  * shard:  padded by wrapping around to a multiple of world (or, with drop_last, cut down to
//            one), then every world-th index starting at rank;
//  * batch:  consecutive chunks of batch_size, the last one partial unless drop_last.
// The permutation comes from ATen's CPU generator, which C++ and Python share.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>
#include <range/v3/range/conversion.hpp>
#include <range/v3/view/chunk.hpp>
#include <range/v3/view/cycle.hpp>
#include <range/v3/view/drop.hpp>
#include <range/v3/view/stride.hpp>
#include <range/v3/view/take.hpp>
#include <range/v3/view/transform.hpp>

#include "parallax/data/shard.hpp"
#include "parallax/error.hpp"

namespace parallax {

using Indices = std::vector<int64_t>;

/// The order of `size` examples in `epoch`: a permutation seeded with seed + epoch, or identity.
inline Indices epoch_order(int64_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  detail::require(size > 0, "cannot order an empty dataset");
  Indices order(static_cast<std::size_t>(size));
  if (!shuffle) {
    for (int64_t i = 0; i < size; ++i) order[static_cast<std::size_t>(i)] = i;
    return order;
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<uint64_t>(epoch));
  const torch::Tensor perm = torch::randperm(size, generator, torch::kLong);
  const int64_t* data = perm.data_ptr<int64_t>();
  order.assign(data, data + size);
  return order;
}

/// How many indices each rank gets (DistributedSampler.num_samples).
inline int64_t shard_length(int64_t size, int64_t world, bool drop_last) {
  return (drop_last && size % world != 0) ? size / world : (size + world - 1) / world;
}

/// The indices of `shard` in an epoch order (see Note [Sampler semantics]).
inline Indices shard_indices(const Indices& order, Shard shard, bool drop_last) {
  detail::require(shard.world >= 1 && shard.rank >= 0 && shard.rank < shard.world,
                  "invalid shard: rank ", shard.rank, " of world ", shard.world);
  const auto size = static_cast<int64_t>(order.size());
  detail::require(size > 0, "cannot shard an empty order");
  const int64_t total = shard_length(size, shard.world, drop_last) * shard.world;
  return order | ranges::views::cycle | ranges::views::take(total) |
         ranges::views::drop(shard.rank) | ranges::views::stride(shard.world) |
         ranges::to<Indices>();
}

/// The number of batches a shard of `length` indices makes.
inline int64_t batch_count(int64_t length, int64_t batch_size, bool drop_last) {
  return drop_last ? length / batch_size : (length + batch_size - 1) / batch_size;
}

/// Consecutive batches of `batch_size` indices; the last one is partial unless drop_last.
inline std::vector<Indices> batch_indices(const Indices& shard, int64_t batch_size,
                                          bool drop_last) {
  detail::require(batch_size >= 1, "batch size must be at least 1, got ", batch_size);
  const int64_t count = batch_count(static_cast<int64_t>(shard.size()), batch_size, drop_last);
  return shard | ranges::views::chunk(batch_size) | ranges::views::take(count) |
         ranges::views::transform([](auto chunk) { return chunk | ranges::to<Indices>(); }) |
         ranges::to<std::vector<Indices>>();
}

}  // namespace parallax
