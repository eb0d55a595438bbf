// The architectures asl_resnet trains, chosen by name at run time. Besides the ResNets
// (resnet.hpp), AlexNet and VGG-11/16 with torchvision's parameter names (features.N,
// classifier.N), and a linear model on raw pixels — the yardstick that shows the synthetic task
// is not trivial. Each is an ordinary torch::nn module: the Trainer takes them all the same way.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>
#include <parallax/parallax.hpp>

#include "resnet.hpp"

namespace asl {

inline const std::vector<std::string>& architectures() {
  static const std::vector<std::string> names = {"resnet18", "resnet34", "resnet50", "alexnet",
                                                 "vgg11",    "vgg16",    "linear"};
  return names;
}

/// torchvision's AlexNet: five convolutions, adaptive 6x6 pooling, three fully connected layers.
struct AlexNetImpl : torch::nn::Cloneable<AlexNetImpl> {
  explicit AlexNetImpl(int64_t classes) : classes(classes) { reset(); }
  void reset() override {
    using namespace torch::nn;
    auto conv = [](int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
      return Conv2d(Conv2dOptions(in, out, k).stride(s).padding(p));
    };
    auto pool = [] { return MaxPool2d(MaxPool2dOptions(3).stride(2)); };
    features = register_module(
        "features",
        Sequential(conv(3, 64, 11, 4, 2), ReLU(true), pool(), conv(64, 192, 5, 1, 2), ReLU(true),
                   pool(), conv(192, 384, 3, 1, 1), ReLU(true), conv(384, 256, 3, 1, 1), ReLU(true),
                   conv(256, 256, 3, 1, 1), ReLU(true), pool()));
    classifier = register_module(
        "classifier", Sequential(Dropout(0.5), Linear(256 * 6 * 6, 4096), ReLU(true), Dropout(0.5),
                                 Linear(4096, 4096), ReLU(true), Linear(4096, classes)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return classifier->forward(torch::adaptive_avg_pool2d(features->forward(x), {6, 6}).flatten(1));
  }
  int64_t classes;
  torch::nn::Sequential features{nullptr}, classifier{nullptr};
};
TORCH_MODULE(AlexNet);

/// torchvision's VGG without batch norm: configuration "A" (11 layers) or "D" (16 layers).
struct VGGImpl : torch::nn::Cloneable<VGGImpl> {
  VGGImpl(int64_t depth, int64_t classes) : depth(depth), classes(classes) { reset(); }
  void reset() override {
    using namespace torch::nn;
    constexpr int64_t M = 0;  // a max-pool
    const std::vector<int64_t> config =
        depth == 11 ? std::vector<int64_t>{64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M}
                    : std::vector<int64_t>{64, 64,  M,   128, 128, M,   256, 256, 256,
                                           M,  512, 512, 512, M,   512, 512, 512, M};
    features = register_module("features", Sequential());
    int64_t in = 3;
    for (const int64_t width : config) {
      if (width == M) {
        features->push_back(MaxPool2d(MaxPool2dOptions(2).stride(2)));
        continue;
      }
      features->push_back(Conv2d(Conv2dOptions(in, width, 3).padding(1)));
      features->push_back(ReLU(true));
      in = width;
    }
    classifier =
        register_module("classifier", Sequential(Linear(512 * 7 * 7, 4096), ReLU(true),
                                                 Dropout(0.5), Linear(4096, 4096), ReLU(true),
                                                 Dropout(0.5), Linear(4096, classes)));
    for (auto& module : modules(/*include_self=*/false)) {  // torchvision's initialisation
      if (auto* c = module->as<Conv2d>()) {
        init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
        init::zeros_(c->bias);
      } else if (auto* l = module->as<Linear>()) {
        init::normal_(l->weight, 0.0, 0.01);
        init::zeros_(l->bias);
      }
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return classifier->forward(torch::adaptive_avg_pool2d(features->forward(x), {7, 7}).flatten(1));
  }
  int64_t depth, classes;
  torch::nn::Sequential features{nullptr}, classifier{nullptr};
};
TORCH_MODULE(VGG);

/// Multinomial logistic regression on the normalised pixels.
struct LinearProbeImpl : torch::nn::Cloneable<LinearProbeImpl> {
  LinearProbeImpl(int64_t inputs, int64_t classes) : inputs(inputs), classes(classes) { reset(); }
  void reset() override { fc = register_module("fc", torch::nn::Linear(inputs, classes)); }
  torch::Tensor forward(const torch::Tensor& x) { return fc(x.flatten(1)); }
  int64_t inputs, classes;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(LinearProbe);

/// A network chosen by name, and the prefix of its classification layer (the part replaced
/// when pretrained weights have another number of classes, and the part trained alone with
/// --freeze-backbone).
struct Network {
  parallax::Model model;
  std::string head;
};

inline Network make_network(const std::string& arch, int64_t classes, int64_t image_size) {
  parallax::detail::require(classes > 0, "a network needs at least one class");
  Network network;
  if (arch == "resnet18" || arch == "resnet34" || arch == "resnet50")
    network = {parallax::make_model(ResNet(std::stoll(arch.substr(6)), classes)), "fc"};
  else if (arch == "alexnet")
    network = {parallax::make_model(AlexNet(classes)), "classifier.6"};
  else if (arch == "vgg11" || arch == "vgg16")
    network = {parallax::make_model(VGG(std::stoll(arch.substr(3)), classes)), "classifier.6"};
  else if (arch == "linear")
    network = {parallax::make_model(LinearProbe(3 * image_size * image_size, classes)), "fc"};
  else {
    std::string known;
    for (const auto& name : architectures()) known += (known.empty() ? "" : ", ") + name;
    throw parallax::InputError("unknown --arch '" + arch + "' (known: " + known + ")");
  }
  // Down-sampling architectures have a smallest input: find out now, with one clear line,
  // rather than in the middle of the first step.
  torch::NoGradGuard no_grad;
  network.model->eval();
  try {
    network.model(torch::zeros({1, 3, image_size, image_size}));
  } catch (const c10::Error&) {
    throw parallax::InputError("--image-size " + std::to_string(image_size) + " is too small for " +
                               arch);
  }
  network.model->train();
  return network;
}

/// The model as it trains: channels-last convolutions and autocast to `amp` ("bf16", "fp16";
/// "" or "none": full precision). Shared by asl_resnet and bench_cpu, so the two time the same.
inline void set_speed_options(Network& network, bool channels_last, const std::string& amp) {
  if (channels_last) network.model = parallax::with_channels_last(network.model);
  if (!amp.empty() && amp != "none")
    network.model =
        parallax::with_autocast(network.model, amp == "fp16" ? at::kHalf : at::kBFloat16);
}

}  // namespace asl
