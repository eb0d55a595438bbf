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

  TEST_CASE("clip_grad_norm bounds the update") {
    auto data = classification_data(16, 6);
    torch::manual_seed(1);
    Net net;
    const auto before = flat_parameters(*net);
    torch::optim::SGD optimizer(net->parameters(), 1.0);
    px::Trainer<px::Single> trainer(net, optimizer,
                                    px::TrainerOptions().batch_size(16).clip_grad_norm(1e-3));
    trainer.fit(data, cross_entropy);
    const double step = (flat_parameters(*net) - before).norm().item<double>();
    CHECK(step == doctest::Approx(1e-3).epsilon(1e-3));
  }

  TEST_CASE("clip_grad_norm_ keeps the norm on the device: mixed dtypes, sparse, no gradient") {
    for (const double max_norm : {0.5, 1e3}) {  // clipped, and left alone
      torch::manual_seed(3);
      std::vector<torch::Tensor> parameters;
      for (const auto dtype : {torch::kFloat, torch::kDouble, torch::kFloat}) {
        auto p = torch::randn({4, 3}, torch::TensorOptions().dtype(dtype).requires_grad(true));
        p.mutable_grad() = torch::randn({4, 3}, dtype);
        parameters.push_back(p);
      }
      parameters.push_back(torch::zeros({2}, torch::requires_grad()));  // no gradient
      auto embedding = torch::zeros({5, 2}, torch::requires_grad());
      embedding.mutable_grad() =
          torch::sparse_coo_tensor(torch::tensor({{1, 3}}), torch::randn({2, 2}), {5, 2});
      parameters.push_back(embedding);
      // LibTorch's clip_grad_norm_ (which reads the norm back to the host) gives the norm; the
      // scaling is checked against the definition: LibTorch 2.11's leaves sparse gradients as
      // they were (an earlier version of this test compared with it and found that).
      std::vector<torch::Tensor> before, copies;
      for (const auto& p : parameters) {
        before.push_back(p.grad().defined() ? p.grad().to_dense().clone() : torch::Tensor());
        auto copy = p.detach().clone().requires_grad_(true);
        if (p.grad().defined()) copy.mutable_grad() = p.grad().clone();
        copies.push_back(copy);
      }
      const double expected_norm = torch::nn::utils::clip_grad_norm_(copies, 1e9);
      const auto norm = px::clip_grad_norm_(parameters, max_norm);
      CHECK(norm.dim() == 0);
      CHECK(norm.item<double>() == doctest::Approx(expected_norm).epsilon(1e-6));
      const double coefficient = std::min(1.0, max_norm / (expected_norm + 1e-6));
      for (std::size_t i = 0; i < parameters.size(); ++i) {
        INFO("parameter ", i, ", max_norm ", max_norm);
        const auto& grad = parameters[i].grad();
        REQUIRE(grad.defined() == before[i].defined());
        if (!grad.defined()) continue;
        CHECK((grad.scalar_type() == before[i].scalar_type()));
        CHECK(torch::allclose(grad.to_dense(), before[i] * coefficient, 1e-6, 1e-7));
      }
    }
    CHECK(px::clip_grad_norm_({torch::zeros({2}, torch::requires_grad())}, 1.0).item<double>() ==
          0);
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

namespace {

/// A small convolutional classifier that records the dtype its convolution computed in.
struct ConvNetImpl : torch::nn::Cloneable<ConvNetImpl> {
  ConvNetImpl() { reset(); }
  void reset() override {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
    fc = register_module("fc", torch::nn::Linear(8, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const auto y = conv(x);
    conv_dtype = y.scalar_type();
    return fc(torch::relu(bn(y)).mean({2, 3}));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
  c10::ScalarType conv_dtype = c10::ScalarType::Undefined;
};
TORCH_MODULE(ConvNet);

px::TensorDataset image_data(int64_t n) {
  torch::manual_seed(5);
  return px::TensorDataset(torch::randn({n, 3, 8, 8}), torch::randint(0, 3, {n}));
}

}  // namespace

TEST_SUITE("precision") {
  TEST_CASE("with_channels_last: NHWC weights and inputs, same results through DataParallel<2>") {
    auto data = image_data(40);
    auto train = [&](bool channels_last) {
      torch::manual_seed(3);
      ConvNet net;
      px::Model model = px::make_model(net);
      if (channels_last) model = px::with_channels_last(model);
      CHECK(net->conv->weight.is_contiguous(torch::MemoryFormat::ChannelsLast) == channels_last);
      torch::optim::SGD optimizer(net->parameters(), 0.1);
      px::Trainer<px::DataParallel<2>> trainer(
          model, optimizer, px::TrainerOptions().epochs(2).batch_size(8).seed(1),
          px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU})));
      trainer.fit(data, cross_entropy);
      return flat_parameters(*net);
    };
    CHECK(max_difference(train(true), train(false)) <= 1e-4);
  }

  TEST_CASE("with_autocast: bfloat16 inside forward only, float32 outputs, training proceeds") {
    auto data = image_data(32);
    torch::manual_seed(4);
    ConvNet net;
    const auto input = data.inputs().narrow(0, 0, 4);
    const auto reference = net->forward(input);
    CHECK((net->conv_dtype == torch::kFloat));
    px::Model model = px::with_autocast(px::make_model(net));
    const auto output = model(input);
    CHECK((net->conv_dtype == torch::kBFloat16));
    CHECK((output.scalar_type() == torch::kFloat));
    CHECK_FALSE(at::autocast::is_autocast_enabled(at::kCPU));  // the region is closed again
    CHECK(max_difference(output, reference) <= 0.1);
    CHECK_THROWS_AS(px::with_autocast(model, at::kDouble), px::InputError);
    torch::optim::Adam optimizer(net->parameters(), 1e-2);
    px::Trainer<px::Single> trainer(model, optimizer,
                                    px::TrainerOptions().epochs(5).batch_size(8).seed(1));
    const auto history = trainer.fit(data, cross_entropy);
    CHECK(history.epochs.back().train_loss < history.epochs.front().train_loss);
    CHECK((net->conv->weight.scalar_type() == torch::kFloat));  // master weights stay float32
  }
  TEST_CASE("DataParallel replicas keep frozen parameters frozen") {
    auto data = image_data(24);
    torch::manual_seed(6);
    ConvNet net;
    net->conv->weight.set_requires_grad(false);
    const auto frozen = net->conv->weight.detach().clone();
    torch::optim::SGD optimizer(net->fc->parameters(), 0.1);
    px::Trainer<px::DataParallel<2>> trainer(
        net, optimizer, px::TrainerOptions().epochs(2).batch_size(8),
        px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU})));
    trainer.fit(data, cross_entropy);
    CHECK(torch::equal(net->conv->weight, frozen));
    CHECK_FALSE(net->conv->weight.grad().defined());  // no replica sent a gradient for it
    CHECK(net->fc->weight.grad().defined());
  }
}

TEST_SUITE("loss_scaling") {
  TEST_CASE("LossScaler: unscale divides and finds inf/NaN; backoff and growth as GradScaler") {
    px::LossScaler scaler(px::LossScalingOptions().init_scale(8).growth_interval(2));
    auto a = torch::ones({3}, torch::requires_grad());
    auto b = torch::ones({2}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
    a.mutable_grad() = torch::tensor({8.f, 16.f, -4.f});
    b.mutable_grad() = torch::tensor({2.0, 4.0}, torch::kDouble);
    CHECK(scaler.unscale({a, b}));
    CHECK(torch::equal(a.grad(), torch::tensor({1.f, 2.f, -0.5f})));
    CHECK(torch::equal(b.grad(), torch::tensor({0.25, 0.5}, torch::kDouble)));
    scaler.update(true);
    CHECK(scaler.scale() == 8);
    scaler.update(true);  // growth_interval clean steps: x2
    CHECK(scaler.scale() == 16);
    for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
      a.mutable_grad() = torch::tensor({1.f, bad, 1.f});
      b.mutable_grad() = torch::tensor({2.0, 4.0}, torch::kDouble);
      const double scale = scaler.scale();
      CHECK_FALSE(scaler.unscale({a, b}));
      // The other group is unscaled too, though the step will be skipped.
      CHECK(torch::equal(b.grad(), torch::tensor({2.0 / scale, 4.0 / scale}, torch::kDouble)));
      scaler.update(false);
    }
    CHECK(scaler.scale() == 4);  // backed off twice
    CHECK(scaler.skipped_steps() == 2);
    CHECK(scaler.growth_tracker() == 0);
    CHECK_THROWS_AS(px::LossScaler(px::LossScalingOptions().backoff_factor(1.5)), px::InputError);
  }

  TEST_CASE("a power-of-two loss scale changes nothing in float32 (Single and DataParallel<2>)") {
    auto data = image_data(48);
    auto train = [&](auto policy, bool scaled) {
      torch::manual_seed(8);
      ConvNet net;
      torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
      auto opts = px::TrainerOptions().epochs(2).batch_size(8).seed(2).clip_grad_norm(1.0);
      if (scaled) opts.loss_scaling(px::LossScalingOptions().init_scale(1024).growth_interval(3));
      px::Trainer<decltype(policy)> trainer(net, optimizer, opts, std::move(policy));
      trainer.fit(data, cross_entropy);
      if (scaled) CHECK(trainer.loss_scaler()->scale() == 1024 * 4 * 4);  // 12 steps: 4 growths
      return flat_parameters(*net);
    };
    CHECK(torch::equal(train(px::Single(), true), train(px::Single(), false)));
    auto dp = [] {
      return px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCPU, torch::kCPU}));
    };
    CHECK(max_difference(train(dp(), true), train(dp(), false)) <= 1e-6);
  }

  TEST_CASE(
      "float16 autocast with loss scaling: overflowing steps are skipped, training proceeds") {
    auto data = image_data(64);
    torch::manual_seed(9);
    ConvNet net;
    const auto before = flat_parameters(*net);
    torch::optim::Adam optimizer(net->parameters(), 1e-2);
    px::Model model = px::with_autocast(px::make_model(net), at::kHalf);
    // 2^40 overflows float16 gradients (max 65504) at once: the first steps must be skipped.
    const auto path = fresh_directory("loss_scaling") / "checkpoint.pt";
    auto opts = px::TrainerOptions().epochs(6).batch_size(8).seed(1).loss_scaling(
        px::LossScalingOptions().init_scale(std::pow(2.0, 40)).growth_interval(4));
    px::Trainer<px::Single> trainer(model, optimizer, opts);
    trainer.add_callback(std::make_shared<px::Checkpoint>(path));
    const auto history = trainer.fit(data, cross_entropy);
    CHECK((net->conv_dtype == torch::kHalf));
    const auto& scaler = *trainer.loss_scaler();
    CHECK(scaler.skipped_steps() >= 10);  // 2^40 down to at most 2^30
    CHECK(scaler.skipped_steps() < 48);   // but not every step
    CHECK(scaler.scale() < std::pow(2.0, 31));
    const auto after = flat_parameters(*net);
    CHECK(torch::isfinite(after).all().item<bool>());
    CHECK_FALSE(torch::equal(after, before));
    CHECK(history.epochs.back().train_loss < history.epochs.front().train_loss);
    // The scaler's state travels with the checkpoint.
    ConvNet other;
    torch::optim::Adam other_optimizer(other->parameters(), 1e-2);
    px::Trainer<px::Single> resumed(px::with_autocast(px::make_model(other), at::kHalf),
                                    other_optimizer, opts);
    resumed.resume(path);
    CHECK(resumed.loss_scaler()->scale() == scaler.scale());
    CHECK(resumed.loss_scaler()->skipped_steps() == scaler.skipped_steps());
    CHECK(resumed.loss_scaler()->growth_tracker() == scaler.growth_tracker());
  }
}

TEST_SUITE("optimizers") {
  TEST_CASE("FusedAdam steps like torch::optim::Adam (weight decay, amsgrad, channels-last)") {
    auto data = image_data(16);
    const px::Batch batch{data.inputs(), data.targets()};
    for (bool amsgrad : {false, true})
      for (bool channels_last : {false, true}) {
        CAPTURE(amsgrad);
        CAPTURE(channels_last);
        auto train = [&](auto make_optimizer) {
          torch::manual_seed(12);
          ConvNet net;
          px::Model model = px::make_model(net);
          if (channels_last) model = px::with_channels_last(model);
          auto optimizer =
              make_optimizer(net->parameters(),
                             torch::optim::AdamOptions(1e-2).weight_decay(0.01).amsgrad(amsgrad));
          for (int step = 0; step < 5; ++step) {
            optimizer.zero_grad();
            cross_entropy(model(batch.input), batch.target).backward();
            optimizer.step();
          }
          return flat_parameters(*net);
        };
        const auto fused =
            train([](auto params, auto options) { return px::FusedAdam(params, options); });
        const auto reference =
            train([](auto params, auto options) { return torch::optim::Adam(params, options); });
        CHECK(max_difference(fused, reference) <= 1e-5);
        torch::manual_seed(12);
        ConvNet initial;
        CHECK(max_difference(fused, flat_parameters(*initial)) > 1e-3);  // it did train
      }
  }

  TEST_CASE("FusedAdam and Adam continue from each other's saved state") {
    // An MLP: ConvNet's convolution bias gets only rounding noise as gradient (BatchNorm
    // cancels it), which Adam's normalisation turns into lr-sized, noise-driven steps.
    auto data = classification_data(32);
    for (bool fused_first : {true, false}) {
      CAPTURE(fused_first);
      torch::manual_seed(13);
      Net net;
      auto make = [&](bool fused) -> std::unique_ptr<torch::optim::Adam> {
        if (fused) return std::make_unique<px::FusedAdam>(net->parameters(), 5e-3);
        return std::make_unique<torch::optim::Adam>(net->parameters(), 5e-3);
      };
      auto step = [&](torch::optim::Adam& optimizer) {
        optimizer.zero_grad();
        cross_entropy(net->forward(data.inputs()), data.targets()).backward();
        optimizer.step();
      };
      auto first = make(fused_first);
      for (int i = 0; i < 3; ++i) step(*first);
      torch::serialize::OutputArchive saved;
      first->save(saved);
      std::stringstream bytes;
      saved.save_to(bytes);
      std::vector<torch::Tensor> snapshot;
      for (const auto& p : net->parameters()) snapshot.push_back(p.detach().clone());
      for (int i = 0; i < 2; ++i) step(*first);  // the same optimizer goes on
      const auto expected = flat_parameters(*net);
      {
        torch::NoGradGuard no_grad;
        for (std::size_t i = 0; i < snapshot.size(); ++i) net->parameters()[i].copy_(snapshot[i]);
      }
      auto second = make(!fused_first);  // the other one takes over from the saved state
      torch::serialize::InputArchive loaded;
      loaded.load_from(bytes);
      second->load(loaded);
      for (int i = 0; i < 2; ++i) step(*second);
      CHECK(max_difference(flat_parameters(*net), expected) <= 1e-6);
    }
  }
}
