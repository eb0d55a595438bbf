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
#include <tuple>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

#include "parallax/error.hpp"

namespace parallax {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;

  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    torch::Tensor loss;
    if (closure) {
      torch::AutoGradMode enable_grad(true);
      loss = closure();
    }
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
        at::_foreach_add_(list.steps, 1);
        at::_fused_adam_(list.params, list.grads, list.exp_avgs, list.exp_avg_sqs,
                         list.max_exp_avg_sqs, list.steps, options.lr(), beta1, beta2,
                         options.weight_decay(), options.eps(), options.amsgrad(),
                         /*maximize=*/false);
      }
    }
    return loss;
  }

 private:
  struct Lists {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
  };
  struct Counter {
    torch::Tensor tensor;  // float32 on the parameter's device, what the kernel reads
    int64_t step = 0;      // the host's copy, to notice state restored by load()
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

  std::unordered_map<void*, Counter> steps_;
};

}  // namespace parallax
