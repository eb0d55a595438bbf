// Distributed<Backend>: one process per device over a c10d process group (torch's own transport),
// with the data-parallel logic of PyTorch's DistributedDataParallel written on top of it.
//
// Each process binds its model to cuda:LOCAL_RANK (the one GPU CUDA_VISIBLE_DEVICES gives it,
// or the CPU: rank_device in policy/devices.hpp), checks that every rank has the same parameter
// shapes, broadcasts parameters and buffers from rank 0, and averages gradients in buckets
// all-reduced from autograd hooks (comm/bucket_reducer.hpp). The Loader shards every epoch by rank,
// metrics are summed over ranks, and only rank 0 is "main".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "parallax/comm/backend.hpp"
#include "parallax/comm/bucket_reducer.hpp"
#include "parallax/comm/rendezvous.hpp"
#include "parallax/policy/concept.hpp"
#include "parallax/policy/devices.hpp"

#if PARALLAX_HAS_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace parallax {

namespace detail {
/// Process groups made by this program so far, whatever their backend (see connect()).
inline std::atomic<int> process_groups_made{0};
}  // namespace detail

struct DistributedOptions {
  TORCH_ARG(RendezvousOptions, rendezvous) = {};
  /// Store connection and collective timeout.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::minutes(5);
  TORCH_ARG(comm::BucketOptions, buckets) = {};
  /// Broadcast buffers (BatchNorm statistics) from rank 0 before every step, like DDP.
  TORCH_ARG(bool, broadcast_buffers) = true;
};

template <BackendTag B>
class Distributed {
  static_assert(B::available,
                "parallax::Distributed<Backend>: the found LibTorch does not "
                "support this backend (see the tag in comm/backend.hpp)");

 public:
  explicit Distributed(DistributedOptions options = {})
      : options_(std::move(options)), state_(std::make_unique<State>()) {}
  Distributed(Distributed&&) noexcept = default;
  Distributed& operator=(Distributed&&) noexcept = default;

  void bind(const Model& model, const BindContext& context) {
    State& s = *state_;
    s.info = resolve_rendezvous(options_.rendezvous());
    detail::require(context.devices.size() <= 1, name(), " uses one device per process, but ",
                    context.devices.size(), " were given");
    s.device = !context.devices.empty()
                   ? context.devices.front()
                   : rank_device(s.info.local_rank,
                                 torch::cuda::is_available() ? torch::cuda::device_count() : 0,
                                 std::getenv("CUDA_VISIBLE_DEVICES"));
    s.device = usable_device(s.device, name());
#if PARALLAX_HAS_CUDA
    // This rank's GPU becomes the current device: pinned memory, streams without an index and
    // NCCL's communicator then use it rather than cuda:0.
    if (s.device.is_cuda()) c10::cuda::set_device(s.device.index());
#endif
    s.model = model;
    s.model->to(s.device);
    connect();
    check_same_model();
    broadcast(s.model->parameters());
    broadcast(s.model->buffers());
    std::vector<std::string> names;
    for (const auto& item : s.model->named_parameters()) names.push_back(item.key());
    // One process has nothing to average: no buckets, no hooks (Single's cost).
    if (s.info.world_size > 1) {
      auto buckets = options_.buckets();
      buckets.timeout(options_.timeout());
      s.reducer = std::make_unique<comm::BucketReducer>(s.model->parameters(), std::move(names),
                                                        s.backend, buckets);
    }
  }

  torch::Device input_device() const {
    return state_->device;
  }
  Shard shard() const {
    return {state_->info.rank, state_->info.world_size};
  }
  int64_t min_batch() const {
    return 1;
  }

  StepStats forward_backward(const Batch& batch, const LossFunction& loss,
                             const GradScale& grad_scale) {
    State& s = *state_;
    if (options_.broadcast_buffers()) broadcast(s.model->buffers());
    if (!s.reducer) return detail::forward_backward(s.model, batch, loss, grad_scale);
    s.reducer->prepare(!s.no_sync);
    StepStats stats = detail::forward_backward(s.model, batch, loss, grad_scale);
    collective("gradient all-reduce", [&] { s.reducer->finish(); });
    return stats;
  }
  void on_parameters_changed() {}
  torch::Tensor forward(const torch::Tensor& input) {
    torch::NoGradGuard no_grad;
    return state_->model(input.to(state_->device));
  }
  StepStats reduce(const StepStats& stats) {
    State& s = *state_;
    const bool scored = stats.correct.defined();
    auto packed = torch::tensor(
        {stats.loss_sum.defined() ? stats.loss_sum.item().toDouble() : 0.0,
         scored ? stats.correct.item().toDouble() : 0.0, static_cast<double>(stats.samples)},
        torch::TensorOptions().dtype(torch::kDouble).device(s.device));
    std::vector<torch::Tensor> tensors{packed};
    c10d::AllreduceOptions allreduce;
    allreduce.timeout = options_.timeout();
    collective("metric all-reduce", [&] {
      comm::wait(s.backend->allreduce(tensors, allreduce), *s.backend, options_.timeout());
    });
    packed = packed.cpu();
    StepStats total;
    total.loss_sum = packed[0].clone();
    if (scored) total.correct = packed[1].to(torch::kLong);
    total.samples = static_cast<int64_t>(packed[2].item().toDouble());
    return total;
  }
  void synchronize() {
    c10d::BarrierOptions barrier;
    barrier.timeout = options_.timeout();
    collective("barrier", [&] { state_->backend->barrier(barrier)->wait(options_.timeout()); });
  }
  void set_training(bool on) {
    state_->model->train(on);
  }
  bool is_main() const {
    return state_->info.rank == 0;
  }
  int64_t world_size() const {
    return state_->info.world_size;
  }
  std::string name() const {
    return std::string("ddp:") + B::name;
  }

  /// While the returned guard lives, gradients stay local (no all-reduce), like DDP's no_sync():
  /// accumulate k micro-batches under it, then run the last one outside it.
  class NoSync {
   public:
    explicit NoSync(Distributed& policy) : policy_(&policy), previous_(policy.state_->no_sync) {
      policy.state_->no_sync = true;
    }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;
    ~NoSync() { policy_->state_->no_sync = previous_; }

   private:
    Distributed* policy_;
    bool previous_;
  };
  [[nodiscard]] NoSync no_sync() {
    return NoSync(*this);
  }
  const RendezvousInfo& rendezvous() const {
    return state_->info;
  }
  /// The c10d backend, for collectives of your own (after bind).
  c10d::Backend& backend() {
    return *state_->backend;
  }
  std::size_t bucket_count() const {
    return state_->reducer ? state_->reducer->bucket_count() : 0;
  }

 private:
  struct State {
    RendezvousInfo info;
    torch::Device device = torch::kCPU;
    Model model;
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::Backend> backend;
    std::unique_ptr<comm::BucketReducer> reducer;
    bool no_sync = false;
  };

  std::string where() const {
    const auto& i = state_->info;
    return detail::concat(name(), " rank ", i.rank, "/", i.world_size, " (master ", i.master_addr,
                          ":", i.master_port, ")");
  }

  void connect() {
    State& s = *state_;
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(s.info.master_port);
    store_options.isServer = s.info.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(s.info.world_size);
    store_options.waitWorkers = false;
    store_options.timeout = options_.timeout();
    // Several process groups may live in one program (sequential trainings): they share the
    // TCP store (multiTenant) and keep their keys apart with a prefix. Every rank creates its
    // groups in the same order, so the same counter value names the same group everywhere.
    store_options.multiTenant = true;
    const std::string prefix = "parallax/" + std::to_string(detail::process_groups_made++);
    try {
      s.store = c10::make_intrusive<c10d::PrefixStore>(
          prefix, c10::make_intrusive<c10d::TCPStore>(s.info.master_addr, store_options));
    } catch (const std::exception& error) {
      throw std::runtime_error(detail::concat(
          "parallax: ", where(), ": cannot ", s.info.rank == 0 ? "listen as" : "reach",
          " the rendezvous store: ", detail::first_line(error.what())));
    }
    // Every rank publishes the world size it was started with; all must agree.
    s.store->set("parallax/world/" + std::to_string(s.info.rank),
                 bytes(std::to_string(s.info.world_size)));
    const std::string leader = text(s.store->get("parallax/world/0"));
    if (leader != std::to_string(s.info.world_size))
      throw InputError(detail::concat("parallax: ", where(), " was started with WORLD_SIZE=",
                                      s.info.world_size, " but rank 0 with WORLD_SIZE=", leader));
    s.backend = comm::make_backend<B>(s.store, static_cast<int>(s.info.rank),
                                      static_cast<int>(s.info.world_size), options_.timeout(),
                                      s.info.master_addr);
  }

  /// Compares this rank's parameter names and shapes with rank 0's; names the first mismatch.
  void check_same_model() {
    State& s = *state_;
    std::vector<std::string> mine;
    for (const auto& item : s.model->named_parameters()) {
      std::ostringstream line;
      line << item.key() << item.value().sizes();
      mine.push_back(line.str());
    }
    std::ostringstream joined;
    for (const auto& line : mine) joined << line << '\n';
    if (s.info.rank == 0) s.store->set("parallax/model", bytes(joined.str()));
    std::istringstream leader(text(s.store->get("parallax/model")));
    std::string theirs;
    std::size_t index = 0;
    for (; std::getline(leader, theirs); ++index) {
      detail::require(index < mine.size(), where(), ": model has ", mine.size(),
                      " parameters but rank 0's has more (first missing: ", theirs, ")");
      detail::require(mine[index] == theirs, where(), ": parameter ", index, " is ", mine[index],
                      " here but ", theirs, " on rank 0");
    }
    detail::require(index == mine.size(), where(), ": model has ", mine.size(),
                    " parameters but rank 0's has ", index);
  }

  void broadcast(std::vector<torch::Tensor> tensors) {
    if (tensors.empty() || state_->info.world_size == 1) return;
    torch::NoGradGuard no_grad;
    // One flat tensor per dtype keeps it to a few collectives.
    std::vector<torch::Tensor> floats, others;
    for (auto& t : tensors) (t.is_floating_point() ? floats : others).push_back(t);
    for (auto* group : {&floats, &others}) {
      for (std::size_t i = 0; i < group->size();) {
        std::vector<torch::Tensor> same;
        const auto dtype = (*group)[i].scalar_type();
        for (; i < group->size() && (*group)[i].scalar_type() == dtype; ++i)
          same.push_back((*group)[i]);
        auto flat = torch::cat([&] {
          std::vector<torch::Tensor> views;
          for (auto& t : same) views.push_back(t.reshape({-1}));
          return views;
        }());
        std::vector<torch::Tensor> buffer{flat};
        c10d::BroadcastOptions from_rank0;
        from_rank0.timeout = options_.timeout();
        collective("broadcast from rank 0", [&] {
          comm::wait(state_->backend->broadcast(buffer, from_rank0), *state_->backend,
                     options_.timeout());
        });
        int64_t offset = 0;
        for (auto& t : same) {
          t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
          offset += t.numel();
        }
      }
    }
  }

  /// Runs a collective; a failure (a rank died: connection reset; a rank hangs: timeout)
  /// becomes one line naming this rank and the operation.
  template <class Body>
  void collective(const char* what, Body&& body) {
    try {
      body();
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& error) {
      throw std::runtime_error(detail::concat("parallax: ", where(), ": ", what,
                                              " failed (another rank died or stopped answering "
                                              "within ",
                                              options_.timeout().count(),
                                              " ms): ", detail::first_line(error.what())));
    }
  }

  static std::vector<uint8_t> bytes(const std::string& s) {
    return {s.begin(), s.end()};
  }
  static std::string text(const std::vector<uint8_t>& b) {
    return {b.begin(), b.end()};
  }

  DistributedOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace parallax
