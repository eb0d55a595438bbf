// CPU benchmarks against PyTorch in Python (bench/compare_cpu.py runs both sides, interleaved):
//
//   bench_cpu step [--arch resnet18] [--image-size 64] [--batch 32] [--steps 20] [--repeats 1]
//                  [--device cpu|cuda] [--amp none|bf16|fp16] [--channels-last] [--cudnn-benchmark]
//                  [--cuda-graphs]
//       one warm-up epoch, then `repeats` timed epochs of Trainer<Single> over tensors already in
//       memory (on the device: pure step throughput; parallax::FusedAdam 1e-3): prints
//       "images_per_second X", the median epoch (bench/gpu_eager.py is the Python side of the
//       comparison on a GPU)
//   bench_cpu loader --data FOLDER|FILE.pxpack [--image-size 64] [--batch 32] [--workers 2]
//                    [--epochs 3]
//       `epochs` shuffled epochs of parallax::Loader over an ImageFolder (JPEG decoding) or a
//       packed cache, with ImageNet normalisation: prints "batches_per_second X", the median
//       epoch (one epoch of the packed cache is only tens of milliseconds: one alone is noise)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <parallax/parallax.hpp>
#if PARALLAX_HAS_OPENCV
#include <parallax/data/image_folder.hpp>
#endif

#include "../examples/asl_resnet/models.hpp"

namespace px = parallax;

namespace {

std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

bool flag(int argc, char** argv, const std::string& name) {
  for (int i = 2; i < argc; ++i)
    if (argv[i] == name) return true;
  return false;
}

int step(int argc, char** argv) {
  const auto arch = option(argc, argv, "--arch", "resnet18");
  const auto size = std::stoll(option(argc, argv, "--image-size", "64"));
  const auto batch = std::stoll(option(argc, argv, "--batch", "32"));
  const auto steps = std::stoll(option(argc, argv, "--steps", "20"));
  const auto repeats = std::stoll(option(argc, argv, "--repeats", "1"));
  const torch::Device device(option(argc, argv, "--device", "cpu"));
  const auto amp = option(argc, argv, "--amp", "none");
  torch::manual_seed(0);
  auto network = asl::make_network(arch, 29, size);
  std::vector<torch::Tensor> parameters = network.model->parameters();
  asl::set_speed_options(network, flag(argc, argv, "--channels-last"), amp);
  if (flag(argc, argv, "--cudnn-benchmark")) at::globalContext().setBenchmarkCuDNN(true);
  // The examples live on the device already: no loader copies, only the training step.
  px::TensorDataset data(torch::randn({batch * steps, 3, size, size}).to(device),
                         torch::randint(0, 29, {batch * steps}).to(device));
  px::FusedAdam optimizer(parameters, 1e-3);
  auto options = px::TrainerOptions()
                     .epochs(1 + repeats)
                     .batch_size(batch)
                     .workers(0)
                     .shuffle(false)
                     .devices({device});
  if (amp == "fp16") options.loss_scaling(px::LossScalingOptions());
  auto loss = [](const torch::Tensor& out, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(out, y);
  };
  const auto history =
      flag(argc, argv, "--cuda-graphs")
          ? px::Trainer<px::CudaGraphSingle>(network.model, optimizer, options).fit(data, loss)
          : px::Trainer<px::Single>(network.model, optimizer, options).fit(data, loss);
  std::vector<double> rates;
  for (std::size_t e = 1; e < history.epochs.size(); ++e)
    rates.push_back(history.epochs[e].images_per_second);
  std::ranges::sort(rates);
  std::printf("images_per_second %.3f\n", rates[rates.size() / 2]);
  return 0;
}

template <class Dataset>
double batches_per_second(Dataset& dataset, int64_t batch, int64_t workers, int64_t epochs) {
  px::Loader loader(dataset, px::LoaderOptions().batch_size(batch).workers(workers).seed(1));
  std::vector<double> rates;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    int64_t batches = 0;
    for (px::Batch& b : loader.epoch(epoch)) {
      (void)b;
      ++batches;
    }
    rates.push_back(
        static_cast<double>(batches) /
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::ranges::sort(rates);
  return rates[rates.size() / 2];
}

int loader(int argc, char** argv) {
  const std::filesystem::path data = option(argc, argv, "--data", "");
  const auto options =
      px::ImageOptions().image_size(std::stoll(option(argc, argv, "--image-size", "64")));
  const auto batch = std::stoll(option(argc, argv, "--batch", "32"));
  const auto workers = std::stoll(option(argc, argv, "--workers", "2"));
  const auto epochs = std::stoll(option(argc, argv, "--epochs", "3"));
  if (epochs < 1) throw px::InputError("bench_cpu loader: --epochs must be at least 1");
  double rate = 0;
  if (std::filesystem::is_regular_file(data)) {
    px::PackedImages packed(data, options);
    rate = batches_per_second(packed, batch, workers, epochs);
  } else {
#if PARALLAX_HAS_OPENCV
    px::ImageFolder folder(data, options);
    rate = batches_per_second(folder, batch, workers, epochs);
#else
    throw px::InputError("bench_cpu loader: image folders need OpenCV; give a .pxpack");
#endif
  }
  std::printf("batches_per_second %.3f\n", rate);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&] {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "step") return step(argc, argv);
    if (mode == "loader") return loader(argc, argv);
    throw px::InputError("usage: bench_cpu step|loader [options] (see bench/cpu.cpp)");
  });
}
