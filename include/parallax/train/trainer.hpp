// Trainer<Policy>: fit / evaluate / predict for any module, dataset and loss, written once
// against the Policy concept (policy/concept.hpp). It never asks which policy it has.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "parallax/data/loader.hpp"
#include "parallax/policy/concept.hpp"
#include "parallax/policy/model.hpp"
#include "parallax/train/callbacks.hpp"
#include "parallax/train/checkpoint.hpp"
#include "parallax/train/clip_grad.hpp"
#include "parallax/train/metrics.hpp"
#include "parallax/train/options.hpp"

namespace parallax {

namespace detail {
/// Stands for "no validation set".
struct NoDataset {};
}  // namespace detail

template <class P>
class Trainer {
  static_assert(is_policy_v<P>,
                "parallax::Trainer<P>: P must satisfy the parallax::Policy concept "
                "(see policy/concept.hpp and docs/policies.md)");

 public:
  using Clock = std::chrono::steady_clock;

  /// `model`: a module holder or shared_ptr, or a Model (moved to the policy's device);
  /// `optimizer` must hold the model's (trainable) parameters and outlive the Trainer.
  template <class M>
  requires ModuleLike<M> || std::same_as<std::remove_cvref_t<M>, Model> Trainer(
      M&& model, torch::optim::Optimizer& optimizer, TrainerOptions options = {}, P policy = P{})
      : model_(make_model(std::forward<M>(model))),
        optimizer_(optimizer),
        options_(std::move(options)),
        policy_(std::move(policy)) {
    if (options_.loss_scaling()) scaler_.emplace(*options_.loss_scaling());  // checks them
    policy_.bind(model_, BindContext{options_.devices()});
    const auto parameters = model_->parameters();
    if (scaler_ && !parameters.empty()) scaler_->to(parameters.front().device());  // the master's
  }

  /// Adds a callback (runs in the order added; main-only callbacks only on the main process).
  Trainer& add_callback(std::shared_ptr<Callback> callback) {
    callbacks_.push_back(std::move(callback));
    return *this;
  }

  /// Trains for options.epochs epochs (continuing after a resume), validating on `val` after
  /// each epoch. Returns every epoch's metrics, including those before a resume.
  template <class Train, class Val, class Loss>
  History fit(Train&& train, Val&& val, Loss&& loss) {
    return fit_impl(train, &val, LossFunction(std::forward<Loss>(loss)));
  }
  template <class Train, class Loss>
  History fit(Train&& train, Loss&& loss) {
    return fit_impl(train, static_cast<detail::NoDataset*>(nullptr),
                    LossFunction(std::forward<Loss>(loss)));
  }

  /// Loss and accuracy over `dataset` (this process's shard, reduced over all processes).
  template <class Data, class Loss>
  EvalMetrics evaluate(Data&& dataset, Loss&& loss) {
    return evaluate_impl(dataset, LossFunction(std::forward<Loss>(loss)));
  }

  /// Model outputs for a batch of inputs, in eval mode, without gradients.
  torch::Tensor predict(const torch::Tensor& input) {
    ModeScope eval(*this, false);
    return policy_.forward(input.to(policy_.input_device()));
  }
  /// Model outputs for every example of `dataset`, in dataset order, on the CPU.
  template <RandomAccessDataset Data>
  torch::Tensor predict(Data& dataset) {
    ModeScope eval(*this, false);
    Loader<Data> loader(dataset, loader_options(false, Shard{}, eval_batch_size()));
    std::vector<torch::Tensor> outputs;
    for (Batch& batch : loader.epoch(0)) outputs.push_back(policy_.forward(batch.input).cpu());
    return torch::cat(outputs);
  }

  /// Restores model, optimizer, epoch, generator and history from a checkpoint; the next fit
  /// continues with the epoch after the saved one.
  void resume(const std::filesystem::path& path) {
    CheckpointState state = load_checkpoint(path, *model_, optimizer_);
    policy_.on_parameters_changed();
    first_epoch_ = state.next_epoch;
    history_ = std::move(state.history);
    if (scaler_ && state.loss_scaler.defined()) {
      const auto saved = state.loss_scaler.to(torch::kDouble);
      scaler_->restore(saved[0].item<double>(), saved[1].item<int64_t>(), saved[2].item<int64_t>());
    }
    resumed_ = true;
  }

  /// Writes a checkpoint of the current state (normally done by the Checkpoint callback).
  void save(const std::filesystem::path& path) const {
    CheckpointState state{first_epoch_, history_, {}};
    if (scaler_)
      state.loss_scaler = torch::tensor(
          {scaler_->scale(), double(scaler_->growth_tracker()), double(scaler_->skipped_steps())},
          torch::kDouble);
    save_checkpoint(path, *model_, optimizer_, state);
  }

  P& policy() { return policy_; }
  const P& policy() const { return policy_; }
  const Model& model() const { return model_; }
  const TrainerOptions& options() const { return options_; }
  const History& history() const { return history_; }
  /// The loss scaler when TrainerOptions::loss_scaling is set, else null.
  const LossScaler* loss_scaler() const { return scaler_ ? &*scaler_ : nullptr; }

 private:
  /// Sets train/eval mode for a scope and restores the previous one.
  struct ModeScope {
    ModeScope(Trainer& trainer, bool training)
        : trainer(trainer), previous(trainer.model_->is_training()) {
      trainer.policy_.set_training(training);
    }
    ~ModeScope() { trainer.policy_.set_training(previous); }
    Trainer& trainer;
    bool previous;
  };

  int64_t eval_batch_size() const {
    return options_.eval_batch_size() > 0 ? options_.eval_batch_size() : options_.batch_size();
  }

  LoaderOptions loader_options(bool training, Shard shard, int64_t batch_size) const {
    return LoaderOptions()
        .batch_size(batch_size)
        .shuffle(training && options_.shuffle())
        .seed(options_.seed())
        .drop_last(training && options_.drop_last())
        .shard(shard)
        .workers(options_.workers())
        .prefetch(options_.prefetch())
        .device(policy_.input_device());
  }

  void check_options() const {
    detail::require(options_.epochs() >= 0, "epochs must be >= 0, got ", options_.epochs());
    detail::require(options_.batch_size() >= 1, "batch size must be >= 1, got ",
                    options_.batch_size());
    detail::require(options_.batch_size() >= policy_.min_batch(), "batch size ",
                    options_.batch_size(), " is smaller than the ", policy_.min_batch(),
                    " replicas of policy ", policy_.name(), " (each needs at least one example)");
  }

  template <class Callable>
  void each_callback(Callable&& call) {
    for (auto& callback : callbacks_)
      if (!callback->main_only() || policy_.is_main()) call(*callback);
  }

  template <class Train, class Val>
  History fit_impl(Train& train, Val* val, const LossFunction& loss) {
    static_assert(RandomAccessDataset<Train>,
                  "Trainer::fit: the training set must be a random-access dataset "
                  "(size() and get(i) returning .data and .target; see data/dataset.hpp)");
    check_options();
    if (!resumed_) torch::manual_seed(options_.seed());
    Loader<Train> loader(train, loader_options(true, policy_.shard(), options_.batch_size()));
    history_.policy = policy_.name();
    history_.world_size = policy_.world_size();
    const FitInfo info{first_epoch_,
                       options_.epochs(),
                       loader.batches_per_epoch(),
                       loader.samples_per_epoch(),
                       policy_.name(),
                       policy_.world_size(),
                       history_};
    each_callback([&](Callback& c) { c.on_fit_begin(info); });
    FitControl control;
    control.save_checkpoint = [this](const std::filesystem::path& path) { save(path); };
    for (int64_t epoch = first_epoch_; epoch < options_.epochs() && !control.stop_requested;
         ++epoch) {
      if (options_.lr_schedule()) options_.lr_schedule()(optimizer_, epoch);
      each_callback([&](Callback& c) { c.on_epoch_begin(epoch); });
      const auto epoch_start = Clock::now();
      const StepStats train_stats = policy_.reduce(train_epoch(loader, epoch, loss));
      EpochMetrics metrics;
      metrics.epoch = epoch;
      // Reading the loss waits for the device's queued work, so the clock reads after it.
      metrics.train_loss = train_stats.mean_loss();
      const double train_seconds = seconds_since(epoch_start);
      metrics.train_accuracy = train_stats.accuracy();
      metrics.train_samples = train_stats.samples;
      metrics.images_per_second = train_stats.samples / std::max(train_seconds, 1e-9);
      metrics.learning_rate = learning_rate(optimizer_);
      if constexpr (!std::is_same_v<Val, detail::NoDataset>) {
        const EvalMetrics validation = evaluate_impl(*val, loss);
        metrics.val_loss = validation.loss;
        metrics.val_accuracy = validation.accuracy;
      }
      policy_.synchronize();
      metrics.seconds = seconds_since(epoch_start);
      history_.epochs.push_back(metrics);
      history_.wall_seconds += metrics.seconds;
      first_epoch_ = epoch + 1;
      each_callback([&](Callback& c) { c.on_epoch_end(metrics, control); });
    }
    each_callback([&](Callback& c) { c.on_fit_end(history_); });
    return history_;
  }

  template <class Train>
  StepStats train_epoch(Loader<Train>& loader, int64_t epoch, const LossFunction& loss) {
    ModeScope train_mode(*this, true);
    StepStats total;
    const auto start = Clock::now();
    auto batches = loader.epoch(epoch);
    int64_t step = 0;
    for (Batch& batch : batches) {
      optimizer_.zero_grad();
      total += policy_.forward_backward(batch, loss, scaler_ ? scaler_->grad_scale() : 1.0);
      // With loss scaling, a step whose gradients overflowed is skipped (Note [Dynamic loss
      // scaling]); gradients are unscaled before clipping so the norm is the true one.
      torch::Tensor found_inf;
      if (scaler_) found_inf = scaler_->unscale(model_->parameters());
      if (options_.clip_grad_norm() > 0)
        clip_grad_norm_(model_->parameters(), options_.clip_grad_norm());
      bool stepped = true;
      if (scaler_) {
        stepped = detail::step_unless(optimizer_, found_inf);
        scaler_->update(found_inf);
      } else {
        optimizer_.step();
      }
      if (stepped) policy_.on_parameters_changed();
      const StepInfo info{
          epoch,          options_.epochs(),   ++step, batches.size(), total.samples,
          total.loss_sum, seconds_since(start)};
      each_callback([&](Callback& c) { c.on_step_end(info); });
    }
    return total;
  }

  template <class Data>
  EvalMetrics evaluate_impl(Data& dataset, const LossFunction& loss) {
    static_assert(RandomAccessDataset<Data>,
                  "Trainer: validation/evaluation data must be a random-access dataset");
    ModeScope eval(*this, false);
    torch::NoGradGuard no_grad;
    Loader<Data> loader(dataset, loader_options(false, policy_.shard(), eval_batch_size()));
    StepStats total;
    for (Batch& batch : loader.epoch(0))
      total += detail::score(policy_.forward(batch.input), batch, loss);
    total = policy_.reduce(total);
    return EvalMetrics{total.mean_loss(), total.accuracy(), total.samples};
  }

  static double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  Model model_;
  torch::optim::Optimizer& optimizer_;
  TrainerOptions options_;
  P policy_;
  std::optional<LossScaler> scaler_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  History history_;
  int64_t first_epoch_ = 0;
  bool resumed_ = false;
};

}  // namespace parallax
