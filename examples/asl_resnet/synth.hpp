// A procedural stand-in for the Kaggle "ASL Alphabet" data, in exactly its layout:
//   ROOT/asl_alphabet_train/asl_alphabet_train/<class>/<class><n>.jpg   (200x200 JPEG)
//   ROOT/asl_alphabet_test/asl_alphabet_test/<class>_test.jpg
// Each class is a hand-like shape: a palm and five fingers, each finger extended or folded
// according to the class's bit pattern, with a class-specific thumb angle; every image draws it
// under a random pose, scale, skin colour, background, lighting and noise. Deterministic for a
// seed (each image has its own generator), so generation can run on several threads.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace asl {

/// Training images per class of the embedded default set: one resnet18 epoch at 64 px stays
/// under a minute on 2 CPU cores, and resnet18 still reaches 95% validation accuracy.
inline constexpr int default_per_class = 150;
/// Bumped whenever draw_sign changes, so cached default sets are drawn again.
inline constexpr int synth_version = 2;

inline const std::vector<std::string>& class_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (char c = 'A'; c <= 'Z'; ++c) n.emplace_back(1, c);
    n.insert(n.end(), {"del", "nothing", "space"});
    return n;
  }();
  return names;
}

/// One 200x200 BGR image of class `label`, drawn from generator seed `seed`.
inline cv::Mat draw_sign(int label, uint64_t seed) {
  cv::RNG rng(seed);
  const int size = 200;
  // Background: a random two-colour gradient with a few clutter rectangles.
  cv::Mat image(size, size, CV_8UC3);
  const cv::Vec3f top(rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f));
  const cv::Vec3f bottom(rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f));
  for (int y = 0; y < size; ++y) {
    const float t = static_cast<float>(y) / (size - 1);
    const cv::Vec3f c = top * (1 - t) + bottom * t;
    image.row(y).setTo(cv::Scalar(c[0], c[1], c[2]));
  }
  for (int k = rng.uniform(0, 4); k > 0; --k) {
    const cv::Point a(rng.uniform(0, size), rng.uniform(0, size));
    cv::rectangle(image, a, a + cv::Point(rng.uniform(10, 60), rng.uniform(10, 60)),
                  cv::Scalar(rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)), -1);
  }
  if (class_names()[static_cast<std::size_t>(label)] != "nothing") {
    // Skin-like colour, pose.
    const cv::Scalar skin(rng.uniform(60, 140), rng.uniform(90, 170), rng.uniform(150, 240));
    const double angle = rng.uniform(-20.0, 20.0) * CV_PI / 180.0;
    const double scale = rng.uniform(0.85, 1.15);
    const cv::Point2d centre(100 + rng.uniform(-15.0, 15.0), 120 + rng.uniform(-15.0, 15.0));
    auto place = [&](double x, double y) {  // hand coordinates -> image
      x *= scale, y *= scale;
      return cv::Point(static_cast<int>(centre.x + x * std::cos(angle) - y * std::sin(angle)),
                       static_cast<int>(centre.y + x * std::sin(angle) + y * std::cos(angle)));
    };
    // The hand is drawn twice: a darker, wider pass first, so its outline shows on any
    // background, then the skin on top.
    const cv::Scalar edge = skin * 0.55;
    for (const int pass : {0, 1}) {
      const cv::Scalar colour = pass == 0 ? edge : skin;
      const int widen = pass == 0 ? 4 : 0;
      cv::ellipse(image, place(0, 0),
                  cv::Size(static_cast<int>(32 * scale) + widen / 2,
                           static_cast<int>(38 * scale) + widen / 2),
                  angle * 180 / CV_PI, 0, 360, colour, -1, cv::LINE_AA);
      const int pattern = label + 3;  // 5 bits: which fingers are extended
      for (int f = 0; f < 4; ++f) {
        const bool extended = (pattern >> f) & 1;
        const double x = -24 + 16 * f;
        const double length = extended ? 58 + 5 * (f % 2) : 12;
        cv::line(image, place(x, -30), place(x + (f - 1.5) * 4, -30 - length), colour,
                 static_cast<int>(13 * scale) + widen, cv::LINE_AA);
      }
      const bool thumb = (pattern >> 4) & 1;
      const double thumb_angle = (label % 7) * 0.35 - 0.3;
      const double reach = thumb ? 52 : 22;
      cv::line(image, place(28, 5),
               place(28 + reach * std::cos(thumb_angle), 5 - reach * std::sin(thumb_angle)), colour,
               static_cast<int>(14 * scale) + widen, cv::LINE_AA);
    }
    // "del" and "space" add a mark of their own.
    if (class_names()[static_cast<std::size_t>(label)] == "space")
      cv::line(image, place(-45, 45), place(45, 45), skin, static_cast<int>(9 * scale),
               cv::LINE_AA);
    if (class_names()[static_cast<std::size_t>(label)] == "del")
      cv::circle(image, place(0, 0), static_cast<int>(12 * scale), cv::Scalar(40, 40, 40), -1,
                 cv::LINE_AA);
  }
  // Lighting and sensor noise.
  image.convertTo(image, -1, rng.uniform(0.7, 1.3), rng.uniform(-30.0, 30.0));
  cv::Mat noise(size, size, CV_8UC3);
  rng.fill(noise, cv::RNG::NORMAL, cv::Scalar::all(0), cv::Scalar::all(rng.uniform(4.0, 14.0)));
  cv::add(image, noise, image, cv::noArray(), CV_8UC3);
  return image;
}

/// Writes `per_class` training images per class and one test image per class under `root`.
inline void synthesize(const std::filesystem::path& root, int per_class, uint64_t seed,
                       int threads) {
  namespace fs = std::filesystem;
  const auto train = root / "asl_alphabet_train" / "asl_alphabet_train";
  const auto test = root / "asl_alphabet_test" / "asl_alphabet_test";
  const auto& names = class_names();
  for (const auto& name : names) fs::create_directories(train / name);
  fs::create_directories(test);
  const int classes = static_cast<int>(names.size());
  const int total = classes * (per_class + 1);
  std::atomic<int> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    for (int job; (job = next++) < total;) try {
        const int label = job % classes, n = job / classes;  // n == per_class: the test image
        const uint64_t image_seed = seed * 1000003u + static_cast<uint64_t>(job) * 7919u + 1;
        const cv::Mat image = draw_sign(label, image_seed);
        const auto& name = names[static_cast<std::size_t>(label)];
        const auto path = n < per_class ? train / name / (name + std::to_string(n + 1) + ".jpg")
                                        : test / (name + "_test.jpg");
        if (!cv::imwrite(path.string(), image, {cv::IMWRITE_JPEG_QUALITY, 90}))
          throw std::runtime_error("cannot write " + path.string());
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = total;
      }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace asl
