// examples/asl_resnet's ResNet-18/34/50 against torchvision (tests/resnet_reference.py): the
// parameter and buffer names must be exactly torchvision's, the weights load from a plain dict, and
// the eval-mode outputs for the same input agree within 1e-4. Prints "verdict: resnet parity".
#include <cstdio>
#include <fstream>
#include <set>

#include <parallax/parallax.hpp>

#include "../examples/asl_resnet/resnet.hpp"

namespace px = parallax;

namespace {

c10::Dict<c10::IValue, c10::IValue> load_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw px::InputError("resnet_parity: cannot open " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  return torch::pickle_load(bytes).toGenericDict();
}

bool check(const std::string& dir, int64_t depth) {
  const auto weights = load_dict(dir + "/resnet" + std::to_string(depth) + ".pt");
  const auto io = load_dict(dir + "/resnet" + std::to_string(depth) + "_io.pt");
  asl::ResNet model(depth, 29);
  std::set<std::string> ours, theirs;
  for (const auto& entry : weights) theirs.insert(entry.key().toStringRef());
  torch::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, torch::Tensor& tensor) {
    ours.insert(name);
    if (weights.contains(name)) tensor.copy_(weights.at(name).toTensor());
  };
  for (auto& item : model->named_parameters()) copy(item.key(), item.value());
  for (auto& item : model->named_buffers()) copy(item.key(), item.value());
  if (ours != theirs) {
    for (const auto& name : ours)
      if (!theirs.count(name))
        std::printf("resnet%lld: not in torchvision: %s\n", (long long)depth, name.c_str());
    for (const auto& name : theirs)
      if (!ours.count(name))
        std::printf("resnet%lld: missing here: %s\n", (long long)depth, name.c_str());
    return false;
  }
  model->eval();
  const auto output = model->forward(io.at("x").toTensor());
  const double diff = (output - io.at("y").toTensor()).abs().max().item<double>();
  std::printf("resnet%lld: %zu tensors by torchvision's names; max output difference %.3g\n",
              (long long)depth, ours.size(), diff);
  // A replica made by clone() (what DataParallel does) must compute the same.
  auto replica = std::dynamic_pointer_cast<asl::ResNetImpl>(model->clone());
  const double replica_diff =
      (replica->forward(io.at("x").toTensor()) - output).abs().max().item<double>();
  return diff <= 1e-4 && replica_diff == 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&] {
    if (argc != 2) throw px::InputError("usage: resnet_parity DIR (after resnet_reference.py DIR)");
    const bool ok = check(argv[1], 18) && check(argv[1], 34) && check(argv[1], 50);
    std::printf("verdict: %s\n", ok ? "resnet parity" : "MISMATCH");
    return ok ? 0 : 1;
  });
}
