// asl_resnet: the flagship example — an American-Sign-Language alphabet classifier trained
// through parallax with any policy, and its multi-device timing study.
//
//   asl_resnet synth   --out DIR [--per-class N] [--seed S]
//   asl_resnet prepare [--data FOLDER] --out FILE.pxpack [--image-size 64] [--strict]
//   asl_resnet train   [--data FOLDER|FILE.pxpack] --out DIR [--arch A] [--policy P] [--nproc N]
//   ... asl_resnet eval    --model DIR [--data FOLDER] [--json FILE] asl_resnet predict --model DIR
//   [--top K] [--json] IMAGE... asl_resnet study   [--data ...] [--out DIR] [--max-devices N] ...
// Without --data, commands use (and if needed create) the synthetic set next to the binary.
// Exit codes: 0 success, 2 bad input (one line naming it), 1 other failures.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <parallax/parallax.hpp>

#include "image_files.hpp"
#include "output_paths.hpp"
#include "study.hpp"
#include "train.hpp"
#if ASL_IMAGE_FILES
#include "evaluate.hpp"
#include "synth.hpp"
#if ASL_HAS_SERVE
#include "serve.hpp"
#endif
#endif

namespace fs = std::filesystem;
namespace px = parallax;

namespace asl {

fs::path default_data() {
#if !ASL_IMAGE_FILES
  throw parallax::InputError(
      "asl_resnet was built without OpenCV: give --data FILE.pxpack (there is no synthetic set)");
#else
  // Beside build/bin/, found from the executable itself (argv[0] may be a bare name from PATH).
  const auto root = fs::canonical("/proc/self/exe").parent_path().parent_path() / "asl-data";
  // The marker names the generator's version and size: a set drawn by an older synth, or one
  // whose writing was interrupted (the marker comes last), is drawn again.
  const std::string marker = "synth v" + std::to_string(synth_version) + ", " +
                             std::to_string(default_per_class) + " per class, seed 0\n";
  // Ranks started together (torchrun, --nproc) may all get here: one draws, the others wait.
  fs::create_directories(root.parent_path());
  const int lock = ::open((root.string() + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  std::ifstream existing(root / "synth.txt");
  const std::string found((std::istreambuf_iterator<char>(existing)), {});
  if (found != marker) {
    std::cerr << "asl_resnet: no --data given; synthesising the default set in " << root.string()
              << '\n';
    fs::remove_all(root);
    synthesize(root, default_per_class, 0, static_cast<int>(std::thread::hardware_concurrency()));
    parallax::write_text_atomically(root / "synth.txt", marker);
  }
  if (lock >= 0) ::close(lock);
  return root;
#endif
}

}  // namespace asl

namespace {

void add_train_options(CLI::App& cmd, asl::TrainArgs& t) {
  std::string archs;
  for (const auto& name : asl::architectures()) archs += (archs.empty() ? "" : " | ") + name;
  cmd.add_option("--data", t.data, "image folder or .pxpack (default: the synthetic set)");
  cmd.add_option("--arch", t.arch, archs);
  cmd.add_option("--pretrained", t.pretrained,
                 "state dict saved with torch.save(dict(model.state_dict()), FILE)");
  cmd.add_flag("--freeze-backbone", t.freeze_backbone, "train only the classifier");
  cmd.add_option("--policy", t.policy, "single | dp:N | ddp:gloo | ddp:nccl");
  cmd.add_option("--nproc", t.nproc, "processes for ddp (built-in launcher)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--epochs", t.epochs)->check(CLI::PositiveNumber);
  cmd.add_option("--batch-size", t.batch_size, "per step: global for single/dp, per rank for ddp")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--lr", t.lr)->check(CLI::PositiveNumber);
  cmd.add_option("--optimizer", t.optimizer)->check(CLI::IsMember({"adam", "sgd"}));
  cmd.add_option("--schedule", t.schedule, "learning rate per epoch: constant | cosine")
      ->check(CLI::IsMember({"constant", "cosine"}));
  cmd.add_option("--samples", t.samples, "random subset of this many images (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--val-split", t.val_split)->check(CLI::Range(0.0, 0.9));
  cmd.add_option("--image-size", t.image_size, "pixels")->check(CLI::Range(1, 1024));
  cmd.add_option("--seed", t.seed);
  cmd.add_option("--workers", t.workers, "loader threads")->check(CLI::NonNegativeNumber);
  cmd.add_flag("--amp", t.amp, "autocast to --amp-dtype (CUDA; CPU where supported)");
  cmd.add_option("--amp-dtype", t.amp_dtype, "bf16 | fp16 (fp16 with dynamic loss scaling)")
      ->check(CLI::IsMember({"bf16", "fp16"}));
  cmd.add_flag("--cudnn-benchmark", t.cudnn_benchmark, "let cuDNN pick the fastest algorithms");
  cmd.add_flag("--cuda-graphs", t.cuda_graphs,
               "replay forward+backward as a CUDA graph (single policy, static shapes)");
  cmd.add_flag("--channels-last", t.channels_last, "NHWC memory format");
  cmd.add_flag("--augment", t.augment, "random shifts and brightness/contrast");
  cmd.add_flag("--strict", t.strict, "fail on an unreadable image instead of skipping it");
}

}  // namespace

int main(int argc, char** argv) {
  return px::guarded_main([&]() -> int {
    CLI::App app{"asl_resnet: ASL alphabet classifier trained with parallax"};
    app.require_subcommand(1);
    asl::TrainArgs t;
    auto* train_cmd = app.add_subcommand("train", "train a network and write a model directory");
    add_train_options(*train_cmd, t);
    train_cmd->add_option("--out", t.out, "model directory to write")->required();
    asl::StudyArgs s;
    auto* study_cmd = app.add_subcommand("study", "the multi-device timing study");
    asl::add_study_options(*study_cmd, s);
#if ASL_IMAGE_FILES
    std::string synth_out, prepare_data, prepare_out;
    int per_class = asl::default_per_class, prepare_size = 64;
    uint64_t synth_seed = 0;
    bool strict = false;
    auto* synth = app.add_subcommand("synth", "write a synthetic data set in the Kaggle layout");
    synth->add_option("--out", synth_out, "root folder")->required();
    synth->add_option("--per-class", per_class, "training images per class")
        ->check(CLI::PositiveNumber);
    synth->add_option("--seed", synth_seed, "random seed");
    auto* prepare = app.add_subcommand("prepare", "decode a folder once into a packed uint8 cache");
    prepare->add_option("--data", prepare_data,
                        "image folder (class sub-folders or Kaggle layout)");
    prepare->add_option("--out", prepare_out, "pack file to write")->required();
    prepare->add_option("--image-size", prepare_size, "pixels")->check(CLI::Range(1, 1024));
    prepare->add_flag("--strict", strict, "fail on an undecodable file instead of skipping it");
    asl::EvalArgs e;
    auto* eval_cmd = app.add_subcommand("eval", "accuracy, per class and confusion matrix");
    eval_cmd->add_option("--model", e.model, "model directory from train --out")->required();
    eval_cmd->add_option("--data", e.data,
                         "class folders, a Kaggle root or <class>_test.jpg files "
                         "(default: the synthetic set's test images)");
    eval_cmd->add_option("--json", e.json, "also write the report to this file");
    eval_cmd->add_option("--batch-size", e.batch_size)->check(CLI::PositiveNumber);
    eval_cmd->add_flag("--strict", e.strict, "fail on an unreadable image instead of skipping it");
    asl::PredictArgs p;
    auto* predict_cmd = app.add_subcommand("predict", "top-k classes of image files");
    predict_cmd->add_option("--model", p.model, "model directory from train --out")->required();
    predict_cmd->add_option("--top", p.top, "classes to show")->check(CLI::PositiveNumber);
    predict_cmd->add_flag("--json", p.json, "print JSON");
    predict_cmd->add_option("images", p.images, "image files")->required();
#if ASL_HAS_SERVE
    asl::ServeArgs v;
    auto* serve_cmd = app.add_subcommand("serve", "a web page and JSON API to try a model");
    serve_cmd->add_option("--model", v.model, "model directory from train --out")->required();
    serve_cmd->add_option("--host", v.host, "address to bind (127.0.0.1: this machine only)");
    serve_cmd->add_option("--port", v.port)->check(CLI::Range(0, 65535));
    serve_cmd->add_option("--threads", v.threads, "request threads")->check(CLI::Range(1, 256));
    serve_cmd
        ->add_option("--instances", v.instances,
                     "model copies (1: one shared by all request threads)")
        ->check(CLI::Range(1, 64));
    serve_cmd->add_option("--max-upload-mb", v.max_upload_mb, "larger uploads get 413")
        ->check(CLI::Range(1, 1024));
#endif
#else
    // Listed, so that asking for one says why it is missing rather than "unknown command".
    std::vector<CLI::App*> missing;
    for (const char* name : {"synth", "prepare", "eval", "predict", "serve"})
      missing.push_back(app.add_subcommand(name, "(needs OpenCV: not in this build)")
                            ->allow_extras()
                            ->prefix_command());
#endif
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& error) {
      return app.exit(error);
    } catch (const CLI::ParseError& error) {
      throw px::InputError("asl_resnet: " + std::string(error.what()));
    }
    if (*study_cmd) return asl::study(s);
#if !ASL_IMAGE_FILES
    for (const auto* command : missing)
      if (*command)
        throw px::InputError("asl_resnet was built without OpenCV: '" + command->get_name() +
                             "' needs it (train and study take a .pxpack)");
#else
    const auto threads = static_cast<int>(std::thread::hardware_concurrency());
    if (*synth) {
      asl::require_writable_output(synth_out, "--out", asl::Output::directory);
      asl::synthesize(synth_out, per_class, synth_seed, threads);
      std::printf("wrote %zu classes x %d images to %s\n", asl::class_names().size(), per_class,
                  synth_out.c_str());
      return 0;
    }
    if (*prepare) {
      asl::require_writable_output(prepare_out, "--out", asl::Output::file);
      const fs::path data = prepare_data.empty() ? asl::default_data() : fs::path(prepare_data);
      px::ImageFolder folder(asl::train_folder(data), px::ImageOptions().image_size(prepare_size));
      px::ProgressLine progress("prepare", static_cast<int64_t>(*folder.size()), "images/s");
      const auto report = px::pack_images(folder, *folder.size(), prepare_out, threads, strict,
                                          [&] { progress.tick(); });
      for (const auto& skipped : report.skipped) std::cerr << "skipped " << skipped << '\n';
      std::printf("packed %lld images (%zu skipped) of %zu classes into %s\n",
                  static_cast<long long>(report.written), report.skipped.size(),
                  folder.classes().size(), prepare_out.c_str());
      return 0;
    }
    if (*eval_cmd) {
      if (!e.json.empty()) asl::require_writable_output(e.json, "--json", asl::Output::file);
      const fs::path data = e.data.empty() ? asl::default_data() : fs::path(e.data);
      return asl::evaluate(e, data);
    }
    if (*predict_cmd) return asl::predict(p);
#if ASL_HAS_SERVE
    if (*serve_cmd) return asl::serve(v);
#endif
#endif
    return asl::train(t, argc, argv);
  });
}
