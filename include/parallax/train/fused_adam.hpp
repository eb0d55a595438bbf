// FusedAdam: torch::optim::Adam whose step updates all parameters in one fused kernel per
// device and dtype (ATen's _fused_adam_, what Python's Adam(fused=True) runs).
//
// Note [Why a fused Adam]
// LibTorch's Adam::step walks the parameters one by one, about ten small kernels each: a
// ResNet-50 step launches some 1,600 of them, which on a GPU costs more host time than the
// forward pass at small images. Python's Adam uses multi-tensor kernels by default on CUDA, so
// without this a C++ trainer would lose to Python on exactly the part Python is slow at. The
// math, options, state (AdamParamState) and checkpoints are Adam's: FusedAdam *is* an Adam, and
// a checkpoint written by one loads into the other. Step counts are kept as float32 tensors on
// the parameters' device, as the kernel wants them, beside the int64 count Adam serialises.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "parallax/error.hpp"
#include "parallax/train/loss_scaler.hpp"

namespace parallax {

class FusedAdam : public torch::optim::Adam, public SkipsNonFiniteSteps {
 public:
  using torch::optim::Adam::Adam;

  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::Tensor loss;
    if (closure) {
      torch::AutoGradMode enable_grad(true);
      loss = closure();
    }
    update({});
    return loss;
  }

  /// The step, skipped by the kernel itself when `found_inf` is nonzero (loss scaling: Note
  /// [Dynamic loss scaling]); the host never reads the flag.
  void step_unless(const torch::Tensor& found_inf) override { update(found_inf); }

  /// Adam's checkpoint. Steps skipped on the device were counted by the host (Note [Steps
  /// skipped on the device]): the counts are read back first.
  void save(torch::serialize::OutputArchive& archive) const override {
    std::vector<std::pair<Counter*, torch::optim::AdamParamState*>> behind;
    std::vector<torch::Tensor> counts;
    for (auto& [impl, counter] : steps_) {
      const auto found = state_.find(impl);
      if (found == state_.end() || !counter.skips_possible) continue;
      auto& state = static_cast<torch::optim::AdamParamState&>(*found->second);
      if (state.step() != counter.step) continue;  // set by hand since: the host's count is right
      behind.emplace_back(&counter, &state);
      counts.push_back(
          counter.tensor.to(counts.empty() ? counter.tensor.device() : counts.front().device()));
    }
    if (!counts.empty()) {  // one wait for the device, not one per parameter
      const auto host = torch::stack(counts).to(torch::kCPU, torch::kLong);
      for (std::size_t i = 0; i < behind.size(); ++i) {
        auto& [counter, state] = behind[i];
        counter->step = host[static_cast<int64_t>(i)].item<int64_t>();
        counter->skips_possible = false;
        state->step(counter->step);
      }
    }
    torch::optim::Adam::save(archive);
  }
  /// Adam's checkpoint; the step tensors are refilled from its counts at the next step.
  void load(torch::serialize::InputArchive& archive) override {
    torch::optim::Adam::load(archive);
    steps_.clear();
  }

 private:
  void update(const torch::Tensor& found_inf) {
    torch::NoGradGuard no_grad;
    for (auto& group : param_groups_) {
      auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
      std::map<std::tuple<std::string, int>, Lists> lists;  // by device and dtype
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        detail::require(!p.grad().is_sparse(), "FusedAdam does not support sparse gradients");
        auto& state = state_of(p, options.amsgrad());
        state.step(state.step() + 1);
        auto& counter = steps_[p.unsafeGetTensorImpl()];
        // A fresh parameter, or state restored from a checkpoint: start from Adam's count.
        if (!counter.tensor.defined() || counter.step != state.step() - 1)
          counter.tensor =
              torch::full({}, static_cast<double>(state.step() - 1),
                          torch::TensorOptions().dtype(torch::kFloat).device(p.device()));
        counter.step = state.step();
        counter.skips_possible = counter.skips_possible || found_inf.defined();
        auto& list = lists[{p.device().str(), static_cast<int>(p.scalar_type())}];
        list.params.push_back(p);
        list.grads.push_back(p.grad());
        list.exp_avgs.push_back(state.exp_avg());
        list.exp_avg_sqs.push_back(state.exp_avg_sq());
        if (options.amsgrad()) list.max_exp_avg_sqs.push_back(state.max_exp_avg_sq());
        list.steps.push_back(counter.tensor);
      }
      const auto [beta1, beta2] = options.betas();
      for (auto& [key, list] : lists) {
        std::optional<torch::Tensor> flag;
        if (found_inf.defined()) flag = detail::overflow_flag(found_inf, list.params[0].device());
        at::_foreach_add_(list.steps, 1);
        at::_fused_adam_(list.params, list.grads, list.exp_avgs, list.exp_avg_sqs,
                         list.max_exp_avg_sqs, list.steps, options.lr(), beta1, beta2,
                         options.weight_decay(), options.eps(), options.amsgrad(),
                         /*maximize=*/false, /*grad_scale=*/std::nullopt, flag);
        // A skipped step does not count (the kernel left everything else as it was).
        if (flag)
          at::_foreach_sub_(list.steps, std::vector<torch::Tensor>(list.steps.size(), *flag));
      }
    }
  }

  struct Lists {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
  };
  // Note [Steps skipped on the device]
  // A step skipped by step_unless() is not counted by the kernel's float32 step tensor, which
  // the host does not read each step; Adam's int64 count (what a checkpoint holds) then counts
  // steps attempted, until save() reads the tensor back. load() drops the tensors, and `step`
  // mirrors Adam's count, so that a count set by hand is noticed too; either way the tensor is
  // refilled from Adam's count.
  struct Counter {
    torch::Tensor tensor;         // float32 on the parameter's device, what the kernel reads
    int64_t step = 0;             // the host's copy, to notice state restored by load()
    bool skips_possible = false;  // stepped by step_unless() since the counts last agreed
  };

  /// Adam's state for `p`, created as Adam creates it on a parameter's first step.
  torch::optim::AdamParamState& state_of(const torch::Tensor& p, bool amsgrad) {
    auto found = state_.find(p.unsafeGetTensorImpl());
    if (found == state_.end()) {
      auto state = std::make_unique<torch::optim::AdamParamState>();
      state->step(0);
      state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      if (amsgrad) state->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      found = state_.emplace(p.unsafeGetTensorImpl(), std::move(state)).first;
    }
    return static_cast<torch::optim::AdamParamState&>(*found->second);
  }

  mutable std::unordered_map<void*, Counter> steps_;  // save() reads skipped steps back
};

}  // namespace parallax
