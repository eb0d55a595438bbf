// Trainer: determinism, checkpoint/resume, callbacks, evaluate/predict.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support.hpp"

using namespace test;
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

px::TrainerOptions options(int64_t epochs) {
  return px::TrainerOptions().epochs(epochs).batch_size(16).seed(21).workers(2);
}

/// A fresh model and optimizer trained by `fit`; with dropout by default, so the generator
/// state matters. (Several CPU replicas draw dropout masks from torch's one generator in thread
/// order, so bit-reproducible DataParallel runs need a model without dropout.)
template <class Policy, class Fit>
torch::Tensor with_fresh_model(uint64_t init_seed, Policy policy, px::TrainerOptions opts,
                               Fit&& fit, double dropout = 0.2) {
  torch::manual_seed(init_seed);
  Net net(6, 16, 3, dropout);
  torch::optim::Adam optimizer(net->parameters(), 5e-3);
  px::Trainer<Policy> trainer(net, optimizer, opts, std::move(policy));
  fit(trainer);
  return flat_parameters(*net);
}

}  // namespace

TEST_SUITE("determinism") {
  TEST_CASE("same seed, same metrics and parameters (Single and DataParallel<2>)") {
    auto data = classification_data(120, 3);
    auto run = [&](auto policy) {
      px::History history;
      const double dropout = policy.world_size() > 1 ? 0.0 : 0.2;
      auto params = with_fresh_model(
          1, std::move(policy), options(3),
          [&](auto& trainer) { history = trainer.fit(data, data, cross_entropy); }, dropout);
      return std::pair{history, params};
    };
    for (int dp = 0; dp < 2; ++dp) {
      auto make = [&] {
        return dp ? px::DataParallel<0>(
                        px::DataParallelOptions().devices({torch::kCPU, torch::kCPU}))
                  : px::DataParallel<0>(px::DataParallelOptions().devices({torch::kCPU}));
      };
      const auto [h1, p1] = run(make());
      const auto [h2, p2] = run(make());
      CHECK(torch::equal(p1, p2));
      REQUIRE(h1.epochs.size() == 3);
      for (std::size_t e = 0; e < 3; ++e) {
        CHECK(h1.epochs[e].train_loss == h2.epochs[e].train_loss);
        CHECK(h1.epochs[e].val_loss == h2.epochs[e].val_loss);
        CHECK(h1.epochs[e].val_accuracy == h2.epochs[e].val_accuracy);
      }
    }
    const auto [h3, p3] = run(px::Single(torch::kCPU));
    auto other = options(3).seed(22);
    const auto p4 = with_fresh_model(1, px::Single(torch::kCPU), other,
                                     [&](auto& trainer) { trainer.fit(data, cross_entropy); });
    CHECK_FALSE(torch::equal(p3, p4));
  }
}

TEST_SUITE("checkpoint") {
  TEST_CASE("checkpoint after epoch 2, resume into a fresh model: same parameters as 5 epochs") {
    auto data = classification_data(96, 4);
    const auto dir = fresh_directory("resume");
    const auto uninterrupted = with_fresh_model(1, px::Single(torch::kCPU), options(5),
                                                [&](auto& t) { t.fit(data, data, cross_entropy); });
    with_fresh_model(1, px::Single(torch::kCPU), options(2), [&](auto& t) {
      t.add_callback(std::make_shared<px::Checkpoint>(dir / "state.pt"));
      t.fit(data, data, cross_entropy);
    });
    CHECK(fs::exists(dir / "state.pt"));
    px::History resumed_history;
    const auto resumed = with_fresh_model(99, px::Single(torch::kCPU), options(5), [&](auto& t) {
      t.resume(dir / "state.pt");
      resumed_history = t.fit(data, data, cross_entropy);
    });
    CHECK(max_difference(resumed, uninterrupted) == 0.0);
    CHECK(resumed_history.epochs.size() == 5);
    CHECK(resumed_history.epochs.front().epoch == 0);
    // No temporary file is left behind.
    for (const auto& entry : fs::directory_iterator(dir))
      CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
    fs::remove_all(dir);
  }

  TEST_CASE("resume works for DataParallel<2> too") {
    auto data = classification_data(96, 4);
    const auto dir = fresh_directory("resume-dp");
    auto dp = [] {
      return px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU}));
    };
    auto no_dropout = [&](uint64_t seed, px::TrainerOptions opts, auto&& fit) {
      torch::manual_seed(seed);
      Net net;
      torch::optim::Adam optimizer(net->parameters(), 5e-3);
      px::Trainer<px::DataParallel<2>> trainer(net, optimizer, opts, dp());
      fit(trainer);
      return flat_parameters(*net);
    };
    const auto uninterrupted =
        no_dropout(1, options(4), [&](auto& t) { t.fit(data, cross_entropy); });
    no_dropout(1, options(1), [&](auto& t) {
      t.fit(data, cross_entropy);
      t.save(dir / "dp.pt");
    });
    const auto resumed = no_dropout(5, options(4), [&](auto& t) {
      t.resume(dir / "dp.pt");
      t.fit(data, cross_entropy);
    });
    CHECK(max_difference(resumed, uninterrupted) <= 1e-6);
    fs::remove_all(dir);
  }

  TEST_CASE("a missing or corrupt checkpoint is a clear error") {
    Net net;
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    px::Trainer<px::Single> trainer(net, optimizer);
    CHECK_THROWS_WITH_AS(trainer.resume("/nonexistent/state.pt"),
                         "parallax: checkpoint '/nonexistent/state.pt' does not exist",
                         px::InputError);
    const auto dir = fresh_directory("corrupt");
    std::ofstream(dir / "bad.pt") << "not a checkpoint";
    CHECK_THROWS_WITH_AS(trainer.resume(dir / "bad.pt"),
                         doctest::Contains("cannot read checkpoint"), px::InputError);
    fs::remove_all(dir);
  }
}

TEST_SUITE("callbacks") {
  TEST_CASE("metrics log: CSV and JSON per epoch, final summary, atomic") {
    auto data = classification_data(64, 6);
    const auto dir = fresh_directory("log");
    with_fresh_model(1, px::Single(torch::kCPU), options(2), [&](auto& t) {
      t.add_callback(std::make_shared<px::MetricsLog>(dir / "m.csv", dir / "m.json"));
      t.fit(data, data, cross_entropy);
    });
    const auto csv = read_file(dir / "m.csv");
    CHECK(csv.rfind("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds", 0) == 0);
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 3);
    // Epochs numbered from 1, as the progress bar prints them.
    CHECK(csv.find("\n1,") != std::string::npos);
    CHECK(csv.find("\n2,") != std::string::npos);
    const auto json = read_file(dir / "m.json");
    CHECK(json.find("\"policy\": \"single\"") != std::string::npos);
    CHECK(json.find("\"val_accuracy\": ") != std::string::npos);
    CHECK(json.find("\"train_images_per_second\": ") != std::string::npos);
    CHECK(json.find("\"epoch\": 1,") != std::string::npos);
    CHECK(json.find("\"epoch\": 2,") != std::string::npos);
    CHECK(json.find("\"epoch\": 0,") == std::string::npos);
    CHECK(json.find("nan") == std::string::npos);
    fs::remove_all(dir);
  }

  TEST_CASE("early stopping stops when the loss stops improving") {
    auto data = classification_data(64, 6);
    auto stopper = std::make_shared<px::EarlyStopping>(2);
    px::History history;
    with_fresh_model(1, px::Single(torch::kCPU), options(20).lr_schedule([](auto& opt, int64_t) {
      px::set_learning_rate(opt, 0.0);  // nothing is learnt: the loss cannot improve
    }),
                     [&](auto& t) {
                       t.add_callback(stopper);
                       history = t.fit(data, data, cross_entropy);
                     });
    CHECK(history.epochs.size() == 3);  // best at epoch 0, then two epochs without improvement
    CHECK(stopper->stopped_epoch() == 2);
    CHECK(history.last().learning_rate == 0.0);
  }

  TEST_CASE("early stopping after resume keeps the patience already spent") {
    auto data = classification_data(64, 6);
    const auto dir = fresh_directory("early-resume");
    auto frozen = [](int64_t epochs) {
      return options(epochs).lr_schedule([](auto& opt, int64_t) {
        px::set_learning_rate(opt, 0.0);  // the validation loss stays the same
      });
    };
    // Three epochs: the best at epoch 0, then two without improvement.
    with_fresh_model(1, px::Single(torch::kCPU), frozen(3), [&](auto& t) {
      t.add_callback(std::make_shared<px::Checkpoint>(dir / "state.pt"));
      t.fit(data, data, cross_entropy);
    });
    auto stopper = std::make_shared<px::EarlyStopping>(3);
    px::History history;
    with_fresh_model(1, px::Single(torch::kCPU), frozen(20), [&](auto& t) {
      t.resume(dir / "state.pt");
      t.add_callback(stopper);
      history = t.fit(data, data, cross_entropy);
    });
    // A fresh count would run epochs 3..6; the resumed one stops after the third epoch waited.
    CHECK(stopper->stopped_epoch() == 3);
    CHECK(history.epochs.size() == 4);
    fs::remove_all(dir);
  }

  TEST_CASE("early stopping after resume never compares validation with training loss") {
    // Resumed epochs trained without validation (low training losses); this fit validates.
    px::FitInfo info;
    for (int64_t e = 0; e < 3; ++e) {
      px::EpochMetrics resumed;
      resumed.epoch = e;
      resumed.train_loss = 0.1;
      info.history.epochs.push_back(resumed);
    }
    px::EarlyStopping stopper(2);
    stopper.on_fit_begin(info);
    px::FitControl control;
    int64_t epoch = 3;
    for (; epoch < 10 && !control.stop_requested; ++epoch) {
      px::EpochMetrics metrics;
      metrics.epoch = epoch;
      metrics.train_loss = 0.2;
      metrics.val_loss = 0.5;
      stopper.on_epoch_end(metrics, control);
    }
    // The best validation loss is epoch 3's; two epochs without improvement follow.
    CHECK(stopper.stopped_epoch() == 5);
  }

  TEST_CASE("checkpoint: the last epoch is saved however training ends") {
    auto data = classification_data(64, 6);
    const auto dir = fresh_directory("checkpoint-last");
    auto next_epoch = [&](const fs::path& path) {
      Net net(6, 16, 3, 0.2);
      torch::optim::Adam optimizer(net->parameters(), 5e-3);
      return px::load_checkpoint(path, *net, optimizer).next_epoch;
    };
    auto frozen = options(20).lr_schedule([](auto& opt, int64_t) {
      px::set_learning_rate(opt, 0.0);  // the loss cannot improve: stops after epoch 2
    });
    // Stopped early by a callback that runs after the checkpoint's, between two periods.
    with_fresh_model(1, px::Single(torch::kCPU), frozen, [&](auto& t) {
      t.add_callback(std::make_shared<px::Checkpoint>(dir / "stopped.pt", 5));
      t.add_callback(std::make_shared<px::EarlyStopping>(2));
      t.fit(data, data, cross_entropy);
    });
    CHECK(next_epoch(dir / "stopped.pt") == 3);
    // The last of 4 epochs, saved every 3.
    with_fresh_model(1, px::Single(torch::kCPU), options(4), [&](auto& t) {
      t.add_callback(std::make_shared<px::Checkpoint>(dir / "every3.pt", 3));
      t.fit(data, cross_entropy);
    });
    CHECK(next_epoch(dir / "every3.pt") == 4);
    CHECK_THROWS_WITH(px::Checkpoint(dir / "x.pt", 0),
                      doctest::Contains("every must be >= 1, got 0"));
    fs::remove_all(dir);
  }

  TEST_CASE("metrics log after resume: every epoch on disk from the first write") {
    struct CrashAtEpochEnd : px::Callback {
      void on_epoch_end(const px::EpochMetrics&, px::FitControl&) override {
        throw std::runtime_error("crash");
      }
    };
    auto data = classification_data(64, 6);
    const auto dir = fresh_directory("log-resume");
    with_fresh_model(1, px::Single(torch::kCPU), options(2), [&](auto& t) {
      t.add_callback(std::make_shared<px::Checkpoint>(dir / "state.pt"));
      t.fit(data, cross_entropy);
    });
    with_fresh_model(1, px::Single(torch::kCPU), options(4), [&](auto& t) {
      t.resume(dir / "state.pt");
      t.add_callback(std::make_shared<px::MetricsLog>(dir / "m.csv", dir / "m.json"));
      t.add_callback(std::make_shared<CrashAtEpochEnd>());
      CHECK_THROWS_WITH(t.fit(data, cross_entropy), "crash");  // during the third epoch's end
    });
    const auto csv = read_file(dir / "m.csv");
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 4);  // the header and epochs 1, 2, 3
    CHECK(csv.find("\n1,") != std::string::npos);
    CHECK(read_file(dir / "m.json").find("\"epoch\": 1,") != std::string::npos);
    fs::remove_all(dir);
  }

  TEST_CASE("progress bar prints epoch, step, loss, images/s and ETA as plain lines") {
    auto data = classification_data(64, 6);
    std::ostringstream out;
    with_fresh_model(1, px::Single(torch::kCPU), options(1), [&](auto& t) {
      t.add_callback(std::make_shared<px::ProgressBar>(out, false));
      t.fit(data, cross_entropy);
    });
    const auto text = out.str();
    CHECK(text.find("epoch 1/1") != std::string::npos);
    CHECK(text.find("epoch 1/1 loss ") != std::string::npos);
    CHECK(text.find("] 4/4 ") != std::string::npos);
    CHECK(text.find("img/s ETA") != std::string::npos);
    CHECK(text.find('\r') == std::string::npos);
  }
}

TEST_SUITE("evaluate") {
  TEST_CASE("evaluate and predict match the model applied directly") {
    auto data = classification_data(50, 8);
    torch::manual_seed(2);
    Net net;
    torch::optim::SGD optimizer(net->parameters(), 0.0);
    px::Trainer<px::DataParallel<2>> trainer(
        net, optimizer, px::TrainerOptions().batch_size(7),
        px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU})));
    torch::NoGradGuard no_grad;
    const auto direct = net->forward(data.inputs());
    CHECK(max_difference(trainer.predict(data), direct) <= 1e-6);
    CHECK(max_difference(trainer.predict(data.inputs()), direct) <= 1e-6);
    const auto metrics = trainer.evaluate(data, cross_entropy);
    CHECK(metrics.samples == 50);
    CHECK(metrics.loss ==
          doctest::Approx(cross_entropy(direct, data.targets()).item<double>()).epsilon(1e-5));
    const double accuracy = direct.argmax(1).eq(data.targets()).sum().item<double>() / 50;
    CHECK(metrics.accuracy == doctest::Approx(accuracy));
    CHECK(net->is_training());  // evaluate restores the previous mode
  }
}
