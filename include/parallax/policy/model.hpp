// Model: any torch::nn module behind one type, so policies and the Trainer need no templates on it.
//
// torch::nn::Module has no virtual forward(): only the concrete type knows its signature. The
// Trainer's constructor still sees that type, so it captures `forward` there, once, as a
// function that casts back. Replicas made by clone() have the same dynamic type, so the same
// function serves them.
#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <type_traits>

#include <torch/torch.h>

namespace parallax {

using ForwardFunction = std::function<torch::Tensor(torch::nn::Module&, const torch::Tensor&)>;

struct Model {
  std::shared_ptr<torch::nn::Module> module;
  ForwardFunction forward;

  torch::Tensor operator()(const torch::Tensor& input) const { return forward(*module, input); }
  torch::nn::Module& operator*() const { return *module; }
  torch::nn::Module* operator->() const { return module.get(); }
};

namespace detail {

template <class T>
struct module_impl {
  using type = void;
};
template <class Impl>
struct module_impl<std::shared_ptr<Impl>> {
  using type = Impl;
};
template <class T>
requires requires {
  typename T::ContainedType;
} && std::derived_from<T, torch::nn::ModuleHolder<typename T::ContainedType>>
struct module_impl<T> {
  using type = typename T::ContainedType;
};

}  // namespace detail

/// The concrete module type behind a holder (`torch::nn::Linear`, `TORCH_MODULE(Net)`) or a
/// `std::shared_ptr<NetImpl>`.
template <class M>
using module_impl_t = typename detail::module_impl<std::remove_cvref_t<M>>::type;

/// A module the Trainer accepts: a holder or shared_ptr of a torch::nn::Module subclass whose
/// forward takes one Tensor and returns a Tensor.
template <class M>
concept ModuleLike = std::derived_from<module_impl_t<M>, torch::nn::Module> &&
    requires(module_impl_t<M>& module, const torch::Tensor& input) {
  { module.forward(input) } -> std::convertible_to<torch::Tensor>;
};

/// A Model is already wrapped: passes through (e.g. a network chosen at run time, or one whose
/// forward was decorated by with_autocast).
inline Model make_model(Model model) {
  return model;
}

/// Wraps a holder or shared_ptr of a module into a Model.
template <ModuleLike M>
Model make_model(M&& model) {
  using Impl = module_impl_t<M>;
  std::shared_ptr<Impl> pointer;
  if constexpr (requires { model.ptr(); }) {
    pointer = model.ptr();
  } else {
    pointer = model;
  }
  return Model{pointer, [](torch::nn::Module& module, const torch::Tensor& input) -> torch::Tensor {
                 return static_cast<Impl&>(module).forward(input);
               }};
}

}  // namespace parallax
