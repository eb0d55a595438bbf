// asl_resnet eval (accuracy, per-class accuracy, confusion matrix) and predict (top-k) for a
// trained model directory.
#pragma once

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <parallax/data/image_folder.hpp>
#include <parallax/parallax.hpp>

#include "inference.hpp"

namespace asl {

/// Labelled image files, labels by the model's class list: a class-per-folder root, a Kaggle
/// root (its test folder), or a flat folder of "<class>_<anything>.jpg" (the 29-image test
/// layout). A parallax PixelSource, so the library's parallel decoding reads it.
class LabelledFiles {
 public:
  LabelledFiles(const std::filesystem::path& data, const std::vector<std::string>& classes,
                int64_t image_size)
      : classes_(classes), image_size_(image_size) {
    namespace fs = std::filesystem;
    using parallax::detail::require;
    fs::path root = data;
    if (fs::is_directory(data / "asl_alphabet_test" / "asl_alphabet_test"))
      root = data / "asl_alphabet_test" / "asl_alphabet_test";
    require(fs::is_directory(root), "image folder '", data.string(), "' does not exist");
    bool has_folders = false;
    for (const auto& entry : fs::directory_iterator(root)) has_folders |= entry.is_directory();
    if (has_folders) {
      const parallax::ImageFolder folder(root);
      for (std::size_t i = 0; i < *folder.size(); ++i)
        add(folder.path(i), folder.classes().at(static_cast<std::size_t>(folder.label(i))));
    } else {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(root))
        if (entry.is_regular_file() && parallax::ImageFolder::is_image(entry.path()))
          files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      for (const auto& file : files) {
        const std::string stem = file.stem().string();
        const auto underscore = stem.rfind('_');
        require(underscore != std::string::npos && underscore > 0, "'", file.string(),
                "' is not named <class>_<n>.jpg");
        add(file, stem.substr(0, underscore));
      }
    }
    require(!files_.empty(), "image folder '", root.string(), "' has no images");
  }

  torch::Tensor pixels(std::size_t i) const {
    return parallax::load_image(files_.at(i), image_size_);
  }
  int64_t label(std::size_t i) const { return labels_.at(i); }
  const std::filesystem::path& path(std::size_t i) const { return files_.at(i); }
  const std::vector<std::string>& classes() const { return classes_; }
  std::size_t size() const { return files_.size(); }

 private:
  void add(const std::filesystem::path& file, const std::string& name) {
    const auto found = std::find(classes_.begin(), classes_.end(), name);
    parallax::detail::require(found != classes_.end(), "'", file.string(), "' is of class '", name,
                              "', which the model does not know");
    files_.push_back(file);
    labels_.push_back(found - classes_.begin());
  }
  std::vector<std::string> classes_;
  int64_t image_size_;
  std::vector<std::filesystem::path> files_;
  std::vector<int64_t> labels_;
};

struct EvalArgs {
  std::string model, data, json;
  int64_t batch_size = 64;
  bool strict = false;
};

inline int evaluate(const EvalArgs& a, const std::filesystem::path& data) {
  const TrainedModel model(a.model);
  const LabelledFiles files(data, model.classes(), model.image_size());
  const auto count = files.size();
  std::vector<torch::Tensor> pixels(count);
  const auto check = parallax::decode_images(
      files, count, static_cast<int>(std::thread::hardware_concurrency()), a.strict,
      [&](std::size_t i, torch::Tensor image) { pixels[i] = std::move(image); });
  for (const auto& skipped : check.skipped) std::cerr << "asl_resnet: skipped " << skipped << '\n';
  parallax::detail::require(!check.readable.empty(), "no image in '", data.string(),
                            "' can be read");
  const auto classes = static_cast<int64_t>(model.classes().size());
  auto confusion = torch::zeros({classes, classes}, torch::kLong);  // [true, predicted]
  for (std::size_t start = 0; start < check.readable.size();
       start += static_cast<std::size_t>(a.batch_size)) {
    const auto end =
        std::min(check.readable.size(), start + static_cast<std::size_t>(a.batch_size));
    std::vector<torch::Tensor> batch;
    std::vector<int64_t> labels;
    for (auto k = start; k < end; ++k) {
      const auto i = static_cast<std::size_t>(check.readable[k]);
      batch.push_back(pixels[i]);
      labels.push_back(files.label(i));
    }
    const auto predicted = model.probabilities(torch::stack(batch)).argmax(1);
    for (std::size_t k = 0; k < labels.size(); ++k)
      confusion[labels[k]][predicted[static_cast<int64_t>(k)].item<int64_t>()] += 1;
  }
  const auto images = confusion.sum().item<int64_t>();
  const auto correct = confusion.diagonal().sum().item<int64_t>();
  nlohmann::json report = {{"accuracy", static_cast<double>(correct) / images},
                           {"images", images},
                           {"skipped", check.skipped},
                           {"classes", model.classes()},
                           {"per_class", nlohmann::json::object()},
                           {"confusion", nlohmann::json::array()}};
  std::printf("%-8s %7s %8s %9s\n", "class", "images", "correct", "accuracy");
  for (int64_t c = 0; c < classes; ++c) {
    const auto n = confusion[c].sum().item<int64_t>();
    const auto right = confusion[c][c].item<int64_t>();
    std::vector<int64_t> row(confusion[c].data_ptr<int64_t>(),
                             confusion[c].data_ptr<int64_t>() + classes);
    report["confusion"].push_back(row);
    if (n == 0) continue;
    const auto& name = model.classes()[static_cast<std::size_t>(c)];
    report["per_class"][name] = {
        {"images", n}, {"correct", right}, {"accuracy", static_cast<double>(right) / n}};
    std::printf("%-8s %7lld %8lld %8.1f%%\n", name.c_str(), static_cast<long long>(n),
                static_cast<long long>(right), 100.0 * right / n);
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted; '.' = 0)\n%8s", "");
  for (const auto& name : model.classes()) std::printf(" %3.3s", name.c_str());
  for (int64_t c = 0; c < classes; ++c) {
    if (confusion[c].sum().item<int64_t>() == 0) continue;
    std::printf("\n%-8s", model.classes()[static_cast<std::size_t>(c)].c_str());
    for (int64_t p = 0; p < classes; ++p) {
      const auto v = confusion[c][p].item<int64_t>();
      if (v == 0)
        std::printf("   .");
      else
        std::printf(" %3lld", static_cast<long long>(v));
    }
  }
  std::printf("\n\naccuracy %.2f%% (%lld of %lld images, %zu skipped) on %s\n",
              100.0 * correct / images, static_cast<long long>(correct),
              static_cast<long long>(images), check.skipped.size(), data.c_str());
  if (!a.json.empty()) parallax::write_text_atomically(a.json, report.dump(2) + "\n");
  return 0;
}

struct PredictArgs {
  std::string model;
  std::vector<std::string> images;
  int64_t top = 3;
  bool json = false;
};

inline int predict(const PredictArgs& a) {
  const TrainedModel model(a.model);
  nlohmann::json all = nlohmann::json::array();
  for (const auto& image : a.images) {
    const auto probabilities = model.probabilities(parallax::load_image(image, model.image_size()));
    const auto best = model.top(probabilities[0], a.top);
    nlohmann::json top = nlohmann::json::array();
    std::string line = image + ":";
    for (const auto& p : best) {
      top.push_back({{"label", p.label}, {"probability", p.probability}});
      char part[64];
      std::snprintf(part, sizeof part, " %s %.3f", p.label.c_str(), p.probability);
      line += part;
    }
    all.push_back({{"image", image}, {"top", top}});
    if (!a.json) std::printf("%s\n", line.c_str());
  }
  if (a.json) std::printf("%s\n", all.dump(2).c_str());
  return 0;
}

}  // namespace asl
