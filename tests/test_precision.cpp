// Mixed precision, loss scaling, gradient clipping and FusedAdam: what happens to gradients
// between backward and the optimizer's update.
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "support.hpp"

using namespace test;

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

TEST_SUITE("clipping") {
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
    // The scale the policies get is the scaler's own tensor, which the updates change in place.
    const px::GradScale grad_scale = scaler.grad_scale();
    REQUIRE(grad_scale.tensor().defined());
    CHECK(grad_scale.factor() == 1);
    CHECK(grad_scale.apply(torch::tensor(0.5f)).item<float>() == 4);
    const auto clean = scaler.unscale({a, b});
    CHECK(clean.dim() == 0);
    CHECK(clean.item<float>() == 0);
    CHECK(torch::equal(a.grad(), torch::tensor({1.f, 2.f, -0.5f})));
    CHECK(torch::equal(b.grad(), torch::tensor({0.25, 0.5}, torch::kDouble)));
    scaler.update(clean);
    CHECK(scaler.scale() == 8);
    scaler.update(clean);  // growth_interval clean steps: x2
    CHECK(scaler.scale() == 16);
    CHECK(grad_scale.tensor().item<float>() == 16);
    for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
      a.mutable_grad() = torch::tensor({1.f, bad, 1.f});
      b.mutable_grad() = torch::tensor({2.0, 4.0}, torch::kDouble);
      const double scale = scaler.scale();
      const auto found_inf = scaler.unscale({a, b});
      CHECK(found_inf.item<float>() != 0);
      // The other group is unscaled too, though the step will be skipped.
      CHECK(torch::equal(b.grad(), torch::tensor({2.0 / scale, 4.0 / scale}, torch::kDouble)));
      scaler.update(found_inf);
    }
    CHECK(scaler.scale() == 4);  // backed off twice
    CHECK(scaler.skipped_steps() == 2);
    CHECK(scaler.growth_tracker() == 0);
    scaler.update(torch::tensor(2.f));  // any nonzero flag is one skipped step
    CHECK(scaler.scale() == 2);
    CHECK(scaler.skipped_steps() == 3);
    CHECK_THROWS_AS(px::LossScaler(px::LossScalingOptions().backoff_factor(1.5)), px::InputError);
    CHECK_THROWS_AS(px::LossScaler(px::LossScalingOptions().init_scale(1e39)), px::InputError);
    // A copy has its own state; restoring works in place, so the GradScale taken above sees it.
    const px::LossScaler copy = scaler;
    scaler.restore(1024, 1, 7);
    CHECK(copy.scale() == 2);
    CHECK(grad_scale.tensor().item<float>() == 1024);
    CHECK(scaler.growth_tracker() == 1);
    CHECK(scaler.skipped_steps() == 7);
    scaler.restore(1024, 5, 7);  // saved under a longer growth interval
    CHECK(scaler.growth_tracker() == 1);
    CHECK_THROWS_AS(scaler.restore(std::numeric_limits<double>::infinity(), 0, 0), px::InputError);
    CHECK_THROWS_AS(scaler.restore(-1, 0, 0), px::InputError);
    CHECK_THROWS_AS(scaler.restore(8, -1, 0), px::InputError);
    CHECK(scaler.scale() == 1024);  // a refused state changes nothing
  }

  TEST_CASE("GradScale: host factors times a device scale, moved where the loss is") {
    const px::GradScale plain = px::GradScale(2.0) * 0.25;
    CHECK(plain.factor() == 0.5);
    CHECK_FALSE(plain.tensor().defined());
    CHECK(plain.apply(torch::tensor(3.0)).item<double>() == 1.5);
    const px::GradScale scaled = 0.5 * px::GradScale(torch::tensor(8.f), 0.5);
    CHECK(scaled.factor() == 0.25);
    CHECK(scaled.apply(torch::tensor(3.f)).item<float>() == 6);
    CHECK(scaled.to(torch::kCPU).tensor().is_same(scaled.tensor()));
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
    // Adam is stepped after the host reads the overflow flag, FusedAdam skips on the device.
    for (bool fused : {false, true}) {
      CAPTURE(fused);
      torch::manual_seed(9);
      ConvNet net;
      const auto before = flat_parameters(*net);
      auto make_optimizer = [&](ConvNet& model) -> std::unique_ptr<torch::optim::Adam> {
        if (fused) return std::make_unique<px::FusedAdam>(model->parameters(), 1e-2);
        return std::make_unique<torch::optim::Adam>(model->parameters(), 1e-2);
      };
      auto optimizer = make_optimizer(net);
      px::Model model = px::with_autocast(px::make_model(net), at::kHalf);
      // 2^40 overflows float16 gradients (max 65504) at once: the first steps must be skipped.
      const auto path = fresh_directory("loss_scaling") / "checkpoint.pt";
      auto opts = px::TrainerOptions().epochs(6).batch_size(8).seed(1).loss_scaling(
          px::LossScalingOptions().init_scale(std::pow(2.0, 40)).growth_interval(4));
      px::Trainer<px::Single> trainer(model, *optimizer, opts);
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
      // The scaler's state travels with the checkpoint, and so do the optimizer's step counts:
      // only the steps taken (48 batches, less those skipped), however they were skipped.
      ConvNet other;
      auto other_optimizer = make_optimizer(other);
      px::Trainer<px::Single> resumed(px::with_autocast(px::make_model(other), at::kHalf),
                                      *other_optimizer, opts);
      resumed.resume(path);
      CHECK(resumed.loss_scaler()->scale() == scaler.scale());
      CHECK(resumed.loss_scaler()->skipped_steps() == scaler.skipped_steps());
      CHECK(resumed.loss_scaler()->growth_tracker() == scaler.growth_tracker());
      const auto& state = other_optimizer->state().at(other->fc->weight.unsafeGetTensorImpl());
      CHECK(static_cast<torch::optim::AdamParamState&>(*state).step() ==
            48 - scaler.skipped_steps());
    }
  }

  TEST_CASE(
      "with loss scaling an optimizer that can skip on the device is never stepped by the "
      "host") {
    // The spy counts how the Trainer steps it; SGD does the work.
    struct SpySgd : torch::optim::SGD, px::SkipsNonFiniteSteps {
      using torch::optim::SGD::SGD;
      torch::Tensor step(LossClosure closure = nullptr) override {
        ++host_steps;
        return torch::optim::SGD::step(closure);
      }
      void step_unless(const torch::Tensor& found_inf) override {
        flags.push_back(found_inf.item<float>());
        if (flags.back() == 0) torch::optim::SGD::step();
      }
      int host_steps = 0;
      std::vector<float> flags;
    };
    auto data = image_data(32);
    torch::manual_seed(10);
    ConvNet net;
    const auto before = flat_parameters(*net);
    SpySgd optimizer(net->parameters(), torch::optim::SGDOptions(0.05));
    px::Trainer<px::Single> trainer(
        net, optimizer,
        px::TrainerOptions().epochs(1).batch_size(8).loss_scaling(px::LossScalingOptions()));
    trainer.fit(data, cross_entropy);
    CHECK(optimizer.host_steps == 0);
    CHECK(optimizer.flags == std::vector<float>(4, 0.0f));  // float32: nothing overflows
    CHECK_FALSE(torch::equal(flat_parameters(*net), before));
  }

  TEST_CASE("FusedAdam::step_unless: a flagged step changes nothing and is not counted") {
    torch::manual_seed(11);
    auto fused_parameter = torch::randn({5}, torch::requires_grad());
    auto adam_parameter = fused_parameter.detach().clone().requires_grad_();
    px::FusedAdam fused({fused_parameter}, torch::optim::AdamOptions(0.1).weight_decay(0.01));
    torch::optim::Adam adam({adam_parameter}, torch::optim::AdamOptions(0.1).weight_decay(0.01));
    // Any nonzero flag skips (the kernel itself skips only on 1.0).
    for (float flag : {0.f, 1.f, 0.f, 2.f, 1.f, 0.f}) {
      const auto grad = torch::randn({5});
      fused_parameter.mutable_grad() = grad.clone();
      adam_parameter.mutable_grad() = grad.clone();
      fused.step_unless(torch::full({}, flag));
      if (flag == 0) adam.step();
      CHECK(max_difference(fused_parameter, adam_parameter) <= 1e-6);
    }
    // The host counted six steps; saving reads the three taken back.
    auto& state = static_cast<torch::optim::AdamParamState&>(
        *fused.state().at(fused_parameter.unsafeGetTensorImpl()));
    CHECK(state.step() == 6);
    torch::serialize::OutputArchive archive;
    fused.save(archive);
    CHECK(state.step() == 3);
    // And the count goes on from there.
    const auto grad = torch::randn({5});
    fused_parameter.mutable_grad() = grad.clone();
    adam_parameter.mutable_grad() = grad.clone();
    fused.step();
    adam.step();
    CHECK(max_difference(fused_parameter, adam_parameter) <= 1e-6);
    CHECK(state.step() == 4);
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
