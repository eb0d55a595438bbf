// ResNet-18/34/50 whose parameter and buffer names match torchvision's (conv1, bn1,
// layer1.0.conv1, layer2.0.downsample.0, ..., fc), so a state_dict saved from torchvision with
// torch.save(dict(model.state_dict()), path) loads as is.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace asl {

/// A residual block: torchvision's BasicBlock (two 3x3 convolutions) or Bottleneck (1x1, 3x3
/// with the stride, 1x1 expanding by 4), with a 1x1 downsample when the shape changes.
struct BlockImpl : torch::nn::Cloneable<BlockImpl> {
  BlockImpl(int64_t inplanes, int64_t planes, int64_t stride, bool bottleneck)
      : inplanes(inplanes), planes(planes), stride(stride), bottleneck(bottleneck) {
    reset();
  }
  static int64_t expansion(bool bottleneck) { return bottleneck ? 4 : 1; }

  void reset() override {
    using namespace torch::nn;
    auto conv = [](int64_t in, int64_t out, int64_t k, int64_t s) {
      return Conv2d(Conv2dOptions(in, out, k).stride(s).padding(k / 2).bias(false));
    };
    const int64_t out = planes * expansion(bottleneck);
    if (bottleneck) {
      conv1 = register_module("conv1", conv(inplanes, planes, 1, 1));
      bn1 = register_module("bn1", BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, stride));
      bn2 = register_module("bn2", BatchNorm2d(planes));
      conv3 = register_module("conv3", conv(planes, out, 1, 1));
      bn3 = register_module("bn3", BatchNorm2d(out));
    } else {
      conv1 = register_module("conv1", conv(inplanes, planes, 3, stride));
      bn1 = register_module("bn1", BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, 1));
      bn2 = register_module("bn2", BatchNorm2d(planes));
    }
    if (stride != 1 || inplanes != out)
      downsample = register_module("downsample",
                                   Sequential(conv(inplanes, out, 1, stride), BatchNorm2d(out)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    if (bottleneck) y = bn3(conv3(torch::relu(y)));
    return torch::relu(y + (downsample ? downsample->forward(x) : x));
  }

  int64_t inplanes, planes, stride;
  bool bottleneck;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Block);

struct ResNetImpl : torch::nn::Cloneable<ResNetImpl> {
  /// depth 18, 34 or 50; `classes` outputs of fc.
  ResNetImpl(int64_t depth, int64_t classes) : depth(depth), classes(classes) { reset(); }

  void reset() override {
    using namespace torch::nn;
    std::vector<int64_t> counts;
    if (depth == 18)
      counts = {2, 2, 2, 2};
    else if (depth == 34 || depth == 50)
      counts = {3, 4, 6, 3};
    else
      throw std::invalid_argument("ResNet: depth must be 18, 34 or 50, got " +
                                  std::to_string(depth));
    const bool bottleneck = depth == 50;
    layers.clear();  // clone() copies this object and calls reset() again
    conv1 =
        register_module("conv1", Conv2d(Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", BatchNorm2d(64));
    int64_t inplanes = 64;
    for (int64_t stage = 0; stage < 4; ++stage) {
      const int64_t planes = 64 << stage;
      Sequential layer;
      for (int64_t b = 0; b < counts[static_cast<std::size_t>(stage)]; ++b) {
        layer->push_back(Block(inplanes, planes, b == 0 && stage > 0 ? 2 : 1, bottleneck));
        inplanes = planes * BlockImpl::expansion(bottleneck);
      }
      layers.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    }
    fc = register_module("fc", Linear(inplanes, classes));
    // torchvision's initialisation: He (fan_out) for convolutions, BatchNorm at 1 and 0.
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* c = module->as<Conv2d>()) {
        init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* n = module->as<BatchNorm2d>()) {
        init::ones_(n->weight);
        init::zeros_(n->bias);
      }
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
    for (auto& layer : layers) y = layer->forward(y);
    return fc(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

  int64_t depth, classes;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

}  // namespace asl
