// The Policy concept: everything that differs between "how to parallelise" lives behind it.
// The Trainer is written once against it and never asks which policy it has.
// docs/policies.md walks through writing one.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/batch.hpp"
#include "parallax/data/shard.hpp"
#include "parallax/policy/grad_scale.hpp"
#include "parallax/policy/model.hpp"
#include "parallax/policy/step.hpp"

namespace parallax {

/// What the Trainer tells a policy when it binds the model.
struct BindContext {
  /// Devices the user asked for (TrainerOptions::devices); empty: the policy's own choice.
  std::vector<torch::Device> devices;
};

// clang-format off
/// A parallelisation policy.
///
/// * bind(model, ctx): take the master model once; place it (and any replicas) on devices.
/// * input_device(): where the Loader should deliver batches.
/// * shard(): which part of every epoch this process loads ({0, 1} unless several processes).
/// * min_batch(): the smallest batch a step can split (e.g. one example per replica).
/// * forward_backward(batch, loss, grad_scale): add grad_scale x the gradient of the batch's
///   mean loss to the master model's .grad (accumulating, like backward()); return the stats.
///   grad_scale may hold a device tensor (loss scaling: Note [A scale the host never reads]).
/// * on_parameters_changed(): the master's parameters changed (an optimizer step, a loaded
///   checkpoint): refresh whatever copies the policy keeps.
/// * forward(input): inference (no gradient) of a batch, output on the input device.
/// * reduce(stats): the sum of `stats` over every process that trains together.
/// * synchronize(): wait for all processes (end of epoch).
/// * set_training(on): train/eval mode for the model and every copy.
/// * is_main(): this process logs, prints and writes checkpoints.
/// * world_size(): model copies training together; name(): a label such as "dp:2".
template <class P>
concept Policy =
    std::is_object_v<P> && std::move_constructible<P> &&
    requires(P& policy, const P& const_policy, const Model& model, const BindContext& context,
             const Batch& batch, const LossFunction& loss, const GradScale& grad_scale,
             const StepStats& stats, const torch::Tensor& input, bool on) {
      policy.bind(model, context);
      { const_policy.input_device() } -> std::convertible_to<torch::Device>;
      { const_policy.shard() } -> std::convertible_to<Shard>;
      { const_policy.min_batch() } -> std::convertible_to<int64_t>;
      { policy.forward_backward(batch, loss, grad_scale) } -> std::same_as<StepStats>;
      policy.on_parameters_changed();
      { policy.forward(input) } -> std::convertible_to<torch::Tensor>;
      { policy.reduce(stats) } -> std::same_as<StepStats>;
      policy.synchronize();
      policy.set_training(on);
      { const_policy.is_main() } -> std::convertible_to<bool>;
      { const_policy.world_size() } -> std::convertible_to<int64_t>;
      { const_policy.name() } -> std::convertible_to<std::string>;
    };
// clang-format on

/// The same check as a trait, for static_assert and SFINAE.
template <class P>
inline constexpr bool is_policy_v = Policy<P>;

}  // namespace parallax
