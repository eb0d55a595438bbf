// State dicts shared with Python: `torch.save(dict(model.state_dict()), path)` files load here
// by torchvision's names, and a trained model is written in the same form (model.pt), so
// torchvision can read ours back with `model.load_state_dict(torch.load(path))`.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>
#include <parallax/parallax.hpp>

namespace asl {

namespace detail {

inline std::string shape_text(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

/// Every parameter and buffer by its dotted name.
inline std::map<std::string, torch::Tensor> named_tensors(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : module.named_parameters()) tensors.emplace(item.key(), item.value());
  for (auto& item : module.named_buffers()) tensors.emplace(item.key(), item.value());
  return tensors;
}

inline bool under(const std::string& name, const std::string& prefix) {
  return name.rfind(prefix + ".", 0) == 0;
}

}  // namespace detail

/// Reads a state dict (name -> tensor) saved by torch.save or save_state_dict.
inline std::map<std::string, torch::Tensor> read_state_dict(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  parallax::detail::require(in.good(), "cannot read weights '", path.string(), "'");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string hint =
      " (expected a dict of name -> tensor, saved with torch.save(dict(model.state_dict()), path))";
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& error) {
    throw parallax::InputError("'" + path.string() + "' is not a state dict: " +
                               parallax::detail::first_line(error.what()) + hint);
  }
  parallax::detail::require(value.isGenericDict(), "'", path.string(), "' is not a state dict",
                            hint);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& entry : value.toGenericDict()) {
    parallax::detail::require(entry.key().isString() && entry.value().isTensor(), "'",
                              path.string(), "' is not a state dict", hint);
    tensors.emplace(entry.key().toStringRef(), entry.value().toTensor());
  }
  return tensors;
}

/// Copies `path`'s tensors into `module` by name, strictly like PyTorch's load_state_dict,
/// except that tensors under `head` whose shape differs (another number of classes) are left
/// as initialised; the returned lines say which.
inline std::vector<std::string> load_state_dict(torch::nn::Module& module,
                                                const std::filesystem::path& path,
                                                const std::string& head) {
  const auto source = read_state_dict(path);
  auto target = detail::named_tensors(module);
  std::vector<std::string> skipped;
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : source) {
    const auto found = target.find(name);
    parallax::detail::require(found != target.end(), "'", path.string(), "' has '", name,
                              "', which this model does not have");
    if (found->second.sizes() != tensor.sizes()) {
      parallax::detail::require(detail::under(name, head), "'", path.string(), "' has ", name,
                                " of shape ", detail::shape_text(tensor.sizes()), ", this model ",
                                detail::shape_text(found->second.sizes()));
      skipped.push_back("skipping " + name + ": " + detail::shape_text(tensor.sizes()) +
                        " in the file, " + detail::shape_text(found->second.sizes()) +
                        " here (a new " + head + " is trained)");
    } else {
      found->second.copy_(tensor);
    }
    target.erase(found);
  }
  for (const auto& [name, tensor] : target)
    parallax::detail::require(false, "'", path.string(), "' has no '", name, "'");
  return skipped;
}

/// Writes the module's parameters and buffers as a plain dict, atomically, in torch.save's
/// format.
///
/// Note [A state dict torch.load reads by default]
/// torch::pickle_save tags typed containers with torch.jit._pickle.restore_type_tag, a global
/// that torch.load refuses since PyTorch 2.6 (weights_only=True by default). Pickling the dict
/// with aggregate tags off and writing the same zip container gives a file that torch.load
/// and torchvision's load_state_dict read as is, and torch::pickle_load reads back here.
inline void save_state_dict(torch::nn::Module& module, const std::filesystem::path& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [name, tensor] : detail::named_tensors(module))
    dict.insert(name, tensor.detach().to(torch::kCPU).contiguous());
  std::vector<char> pickled;
  torch::jit::Pickler pickler(
      [&](const char* bytes, size_t size) { pickled.insert(pickled.end(), bytes, bytes + size); },
      nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(c10::IValue(dict));
  pickler.stop();
  std::string container;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* bytes, size_t size) {
      container.append(static_cast<const char*>(bytes), size);
      return size;
    });
    torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(),
                                       writer);
  }  // the writer finishes the zip (central directory) when it is destroyed
  parallax::write_text_atomically(path, container);
}

/// Freezes everything but `head`: the transfer-learning mode (only the new classifier trains).
/// Returns the parameters left trainable, for the optimizer.
inline std::vector<torch::Tensor> freeze_all_but(torch::nn::Module& module,
                                                 const std::string& head) {
  std::vector<torch::Tensor> trainable;
  for (auto& item : module.named_parameters()) {
    const bool train = detail::under(item.key(), head);
    item.value().set_requires_grad(train);
    if (train) trainable.push_back(item.value());
  }
  return trainable;
}

}  // namespace asl
