// examples/asl_resnet's ResNet-18/34/50 against torchvision (tests/resnet_reference.py): the
// parameter and buffer names must be exactly torchvision's, the weights load from a plain dict
// through the flagship's loader, and the eval-mode outputs for the same input agree within 1e-4.
// Prints "verdict: resnet parity".
#include <cstdio>
#include <fstream>

#include <parallax/parallax.hpp>

#include "../examples/asl_resnet/models.hpp"
#include "../examples/asl_resnet/weights.hpp"

namespace px = parallax;

namespace {

c10::Dict<c10::IValue, c10::IValue> load_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw px::InputError("resnet_parity: cannot open " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  return torch::pickle_load(bytes).toGenericDict();
}

bool check(const std::string& dir, int64_t depth) {
  const std::string name = "resnet" + std::to_string(depth);
  const auto io = load_dict(dir + "/" + name + "_io.pt");
  auto network = asl::make_network(name, 29, 64);
  // The flagship's own loader: strict by name and shape, as PyTorch's load_state_dict.
  const auto skipped = asl::load_state_dict(*network.model, dir + "/" + name + ".pt", network.head);
  if (!skipped.empty()) return false;
  torch::NoGradGuard no_grad;
  network.model->eval();
  const auto output = network.model(io.at("x").toTensor());
  const double diff = (output - io.at("y").toTensor()).abs().max().item<double>();
  std::printf("%s: %zu tensors by torchvision's names; max output difference %.3g\n", name.c_str(),
              network.model->named_parameters().size() + network.model->named_buffers().size(),
              diff);
  // A replica made by clone() (what DataParallel does) must compute the same.
  auto replica = std::dynamic_pointer_cast<asl::ResNetImpl>(network.model->clone());
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
