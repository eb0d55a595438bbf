// A trained model directory (written by `asl_resnet train --out DIR`) loaded for inference:
// the network its metrics.json names, the weights of its model.pt, the labels of classes.txt,
// and the same preprocessing as training (parallax::normalize_image). Used by eval, predict
// and serve.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <parallax/parallax.hpp>

#include "models.hpp"
#include "weights.hpp"

namespace asl {

struct Prediction {
  std::string label;
  double probability;
};

class TrainedModel {
 public:
  explicit TrainedModel(const std::filesystem::path& dir) : dir_(dir) {
    namespace fs = std::filesystem;
    using parallax::detail::require;
    require(fs::is_directory(dir), "model directory '", dir.string(), "' does not exist");
    for (const char* file : {"metrics.json", "classes.txt", "model.pt"})
      require(fs::is_regular_file(dir / file), "'", (dir / file).string(),
              "' is missing (write the directory with asl_resnet train --out ", dir.string(), ")");
    nlohmann::json metrics;
    try {
      metrics = nlohmann::json::parse(std::ifstream(dir / "metrics.json"));
      arch_ = metrics.at("arch").get<std::string>();
      image_size_ = metrics.at("image_size").get<int64_t>();
    } catch (const nlohmann::json::exception& error) {
      throw parallax::InputError("'" + (dir / "metrics.json").string() +
                                 "' is not a model's metrics: " + error.what());
    }
    std::ifstream names(dir / "classes.txt");
    for (std::string line; std::getline(names, line);)
      if (!line.empty()) classes_.push_back(line);
    require(!classes_.empty(), "'", (dir / "classes.txt").string(), "' lists no classes");
    network_ = make_network(arch_, static_cast<int64_t>(classes_.size()), image_size_);
    const auto skipped = load_state_dict(*network_.model, dir / "model.pt", network_.head);
    require(skipped.empty(), "'", (dir / "model.pt").string(), "' does not match classes.txt (",
            skipped.empty() ? "" : skipped.front(), ")");
    network_.model->eval();
  }

  /// Class probabilities [N, classes] for uint8 [N, 3, S, S] or [3, S, S] images at image_size.
  /// Thread-safe: eval mode, no autograd state, the module only read.
  torch::Tensor probabilities(const torch::Tensor& pixels) const {
    torch::NoGradGuard no_grad;
    const torch::Tensor batch = pixels.dim() == 3 ? pixels.unsqueeze(0) : pixels;
    std::vector<torch::Tensor> inputs;
    for (int64_t i = 0; i < batch.size(0); ++i)
      inputs.push_back(parallax::normalize_image(batch[i], options()));
    return torch::softmax(network_.model(torch::stack(inputs)), 1);
  }

  /// The k most probable classes of one probability row, most probable first.
  std::vector<Prediction> top(const torch::Tensor& row, int64_t k) const {
    const auto [values, indices] = row.topk(std::min<int64_t>(k, row.size(0)));
    std::vector<Prediction> best;
    for (int64_t i = 0; i < values.size(0); ++i)
      best.push_back({classes_.at(static_cast<std::size_t>(indices[i].item<int64_t>())),
                      values[i].item<double>()});
    return best;
  }

  parallax::ImageOptions options() const {
    return parallax::ImageOptions().image_size(image_size_);
  }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::string& arch() const { return arch_; }
  int64_t image_size() const { return image_size_; }
  const std::filesystem::path& dir() const { return dir_; }
  torch::nn::Module& module() const { return *network_.model; }

 private:
  std::filesystem::path dir_;
  std::string arch_;
  int64_t image_size_ = 0;
  std::vector<std::string> classes_;
  Network network_;
};

}  // namespace asl
