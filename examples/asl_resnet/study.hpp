// asl_resnet study: the multi-device timing study of the original project, redone with
// parallax. Every run is a fresh `asl_resnet train` process (fair timings; ddp needs processes
// anyway) writing its own model directory under OUT/runs/; the study reads their metrics.json.
//   * strong scaling: a fixed global batch split over 1..N devices (the original's
//     DataParallel study);
//   * weak scaling: a fixed per-device batch (the original's DDP study);
//   * models: accuracy per epoch and time per architecture on one device.
// On a machine without CUDA the "devices" are CPU replicas (dp) and CPU processes (ddp), and
// every table and chart says so.
#pragma once

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <parallax/parallax.hpp>

#include "models.hpp"
#include "output_paths.hpp"
#include "study_report.hpp"
#include "train.hpp"

extern char** environ;

namespace asl {

std::filesystem::path default_data();

struct StudyArgs {
  std::string data, out = "study", archs = "resnet18,linear", policies = "single,dp,ddp",
                    scaling = "strong,weak", project_links = "nvlink:200,pcie:12";
  int64_t max_devices = 0, epochs = 1, samples = 1160, model_epochs = 5, batch_size = 32,
          image_size = 64, workers = 2;
  double lr = 1e-3;
  uint64_t seed = 0;
};

inline void add_study_options(CLI::App& cmd, StudyArgs& s) {
  cmd.add_option("--data", s.data, "image folder or .pxpack (default: the synthetic set)");
  cmd.add_option("--out", s.out, "study folder (tables, charts, runs/)");
  cmd.add_option("--max-devices", s.max_devices,
                 "largest device count (0: all GPUs, or up to 4 CPU workers by cores)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--policies", s.policies, "comma-separated: single,dp,ddp");
  cmd.add_option("--scaling", s.scaling, "comma-separated: strong,weak (empty: none)");
  cmd.add_option("--epochs", s.epochs, "epochs of each scaling run")->check(CLI::PositiveNumber);
  cmd.add_option("--samples", s.samples, "images used by each scaling run (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--archs", s.archs, "comma-separated architectures to compare (empty: none)");
  cmd.add_option("--model-epochs", s.model_epochs, "epochs of each architecture run")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--batch-size", s.batch_size,
                 "global batch (strong scaling, models) and per-device batch (weak scaling)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--lr", s.lr)->check(CLI::PositiveNumber);
  cmd.add_option("--image-size", s.image_size)->check(CLI::Range(1, 1024));
  cmd.add_option("--workers", s.workers)->check(CLI::NonNegativeNumber);
  cmd.add_option("--seed", s.seed);
  cmd.add_option("--project-links", s.project_links,
                 "projected rows beyond the devices present: NAME:GBPS all-reduce bus bandwidths "
                 "(empty: none)");
}

namespace detail {

inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) items.push_back(item);
  return items;
}

/// Runs `args` with stdout and stderr into `log`; returns the exit status.
inline int run_logged(const std::vector<std::string>& args, const std::filesystem::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::runtime_error("study: cannot start " + args[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// A number as text that reads back to the same double (std::to_string rounds to 6 decimals).
inline std::string exact(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

inline std::string last_line(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

}  // namespace detail

inline int study(const StudyArgs& s) {
  namespace fs = std::filesystem;
  using parallax::detail::require;
  for (const auto& arch : detail::split_list(s.archs)) make_network(arch, 2, s.image_size);
  const auto policies = detail::split_list(s.policies);
  for (const auto& p : policies)
    require(p == "single" || p == "dp" || p == "ddp", "unknown --policies entry '", p,
            "' (single, dp, ddp)");
  const auto scalings = detail::split_list(s.scaling);
  for (const auto& k : scalings)
    require(k == "strong" || k == "weak", "unknown --scaling entry '", k, "' (strong, weak)");

  const bool cuda = torch::cuda::is_available();
  const int64_t available =
      cuda ? static_cast<int64_t>(torch::cuda::device_count())
           : std::min<int64_t>(4, std::max<unsigned>(1, std::thread::hardware_concurrency()));
  const int64_t devices = s.max_devices > 0 ? std::min(s.max_devices, available) : available;
  const std::string kind = cuda ? "cuda" : "cpu";
  const fs::path data = s.data.empty() ? default_data() : fs::path(s.data);
  // Bad data is refused here, in one line, before any run or directory. A folder is kept to
  // be packed below.
  const auto options = parallax::ImageOptions().image_size(s.image_size);
#if ASL_IMAGE_FILES
  std::optional<parallax::ImageFolder> folder;
#endif
  int64_t images = 0, classes = 0;
  if (fs::is_regular_file(data)) {
    const parallax::PackedImages packed(data, options);
    require(packed.image_size() == s.image_size, "pack '", data.string(), "' holds ",
            packed.image_size(), " px images but --image-size is ", s.image_size);
    images = static_cast<int64_t>(*packed.size());
    classes = static_cast<int64_t>(packed.classes().size());
  } else {
#if ASL_IMAGE_FILES
    folder.emplace(train_folder(data), options);
    images = static_cast<int64_t>(*folder->size());
    classes = static_cast<int64_t>(folder->classes().size());
#else
    throw no_image_files(data);
#endif
  }
  const auto links = parse_links(s.project_links);
  require(s.samples <= images, "--samples ", s.samples, " is more than the ", images,
          " images in '", data.string(), "'");
  const std::string self = fs::canonical("/proc/self/exe").string();

  // The plan: every distinct training run, then which study rows use it.
  std::vector<StudyRun> runs;
  auto add = [&](StudyRun run) {
    for (std::size_t i = 0; i < runs.size(); ++i)
      if (runs[i].same_training(run)) {
        runs[i].studies.push_back(run.studies.front());
        return;
      }
    runs.push_back(std::move(run));
  };
  for (const auto& scaling : scalings)
    for (const auto& policy : policies)
      for (int64_t n = 1; n <= (policy == "single" ? 1 : devices); ++n) {
        StudyRun run;
        run.arch = "resnet18";
        run.policy = policy == "single" ? "single"
                     : policy == "dp"   ? "dp:" + std::to_string(n)
                                        : (cuda ? "ddp:nccl" : "ddp:gloo");
        run.devices = n;
        run.global_batch = scaling == "strong" ? s.batch_size : s.batch_size * n;
        run.epochs = s.epochs;
        run.samples = s.samples;
        run.studies = {scaling};
        if (policy == "ddp" && scaling == "strong")
          require(s.batch_size % n == 0, "--batch-size ", s.batch_size,
                  " does not split evenly over ", n, " ddp processes");
        add(run);
      }
  for (const auto& arch : detail::split_list(s.archs)) {
    StudyRun run;
    run.arch = arch;
    run.policy = "single";
    run.devices = 1;
    run.global_batch = s.batch_size;
    run.epochs = s.model_epochs;
    run.samples = 0;
    run.schedule = "cosine";
    run.studies = {"model"};
    add(run);
  }
  require(!runs.empty(), "study: nothing to run (empty --scaling and --archs)");
  require_writable_output(s.out, "--out", Output::directory);

  const fs::path made = first_missing(s.out);  // removed again if a run refuses its input
  fs::create_directories(fs::path(s.out) / "runs");
  // Every run trains on a packed cache, so the study times training, not JPEG decoding (which
  // would compete with the compute for the same cores): a folder is decoded once, here.
  fs::path training_data = data;
#if ASL_IMAGE_FILES
  if (folder) {
    training_data = fs::path(s.out) / "data.pxpack";
    parallax::ProgressLine progress("study: packing " + data.string(), images, "images/s");
    const auto report = parallax::pack_images(*folder, *folder->size(), training_data,
                                              static_cast<int>(std::thread::hardware_concurrency()),
                                              false, [&] { progress.tick(); });
    for (const auto& skipped : report.skipped)
      std::fprintf(stderr, "skipped %s\n", skipped.c_str());
  }
#endif
  std::printf("study: %zu runs on %lld %s device(s)%s -> %s\n", runs.size(),
              static_cast<long long>(devices), kind.c_str(),
              cuda ? "" : " (CPU figures: replicas and processes share the cores, not GPUs)",
              s.out.c_str());
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    auto& run = runs[i];
    const fs::path dir = fs::path(s.out) / "runs" / run.name();
    const bool ddp = run.policy.rfind("ddp", 0) == 0;
    std::vector<std::string> args = {
        self,           "train",
        "--data",       training_data.string(),
        "--out",        dir.string(),
        "--arch",       run.arch,
        "--policy",     run.policy,
        "--epochs",     std::to_string(run.epochs),
        "--batch-size", std::to_string(ddp ? run.global_batch / run.devices : run.global_batch),
        "--samples",    std::to_string(run.samples),
        "--image-size", std::to_string(s.image_size),
        "--lr",         detail::exact(s.lr),
        "--seed",       std::to_string(s.seed),
        "--workers",    std::to_string(s.workers)};
    if (ddp) args.insert(args.end(), {"--nproc", std::to_string(run.devices)});
    args.insert(args.end(), {"--schedule", run.schedule});
    std::printf("[%zu/%zu] %-28s ", i + 1, runs.size(), run.label().c_str());
    std::fflush(stdout);
    fs::create_directories(dir);
    const fs::path log = dir / "log.txt";
    const int status = detail::run_logged(args, log);
    if (status == 2) {  // the run refused its input: so does the study, leaving nothing behind
      const std::string reason = detail::last_line(log);
      remove_made(s.out, made);
      throw parallax::InputError("study: run " + run.name() + ": " + reason);
    }
    if (status != 0)
      throw std::runtime_error("study: run " + run.name() + " failed (exit " +
                               std::to_string(status) + "): " + detail::last_line(log) +
                               " (log: " + log.string() + ")");
    run.metrics = nlohmann::json::parse(std::ifstream(dir / "metrics.json"));
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%7.1f s %8.1f img/s  val %5.1f%%   (study so far %.0f s)\n",
                run.metrics["wall_seconds"].get<double>(),
                run.metrics["train_images_per_second"].get<double>(),
                100 * run.metrics["val_accuracy"].get<double>(), elapsed);
  }
  // Projections start from the one-device Single run at the per-device batch, if there is one.
  std::vector<ProjectionRow> projected;
  const auto base = std::find_if(runs.begin(), runs.end(), [&](const StudyRun& run) {
    return run.policy == "single" && run.global_batch == s.batch_size;
  });
  if (base != runs.end())
    projected = project_weak_scaling(base->arch, base->global_batch, base->images_per_second(),
                                     classes, s.image_size, devices, links);
  StudyInfo info{kind, devices, s.image_size, s.batch_size, data.string()};
  write_study_report(info, runs, projected, s.out);
  return 0;
}

}  // namespace asl
