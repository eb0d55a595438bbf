// Single and DataParallel<N>: equivalence, the Policy concept, errors, rendezvous, step
// projections and the bucket reducer. The GPU cases are in test_cuda.cpp.
#include <map>
#include <tuple>

#include "support.hpp"

#if PARALLAX_HAS_GLOO
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#endif

using namespace test;

namespace {

struct NotAPolicy {
  void bind(const px::Model&, const px::BindContext&) {}
};

px::DataParallelOptions cpu_replicas(int n) {
  return px::DataParallelOptions().devices(std::vector<torch::Device>(n, torch::kCPU));
}

}  // namespace

TEST_SUITE("concept") {
  TEST_CASE("the policies satisfy the concept; an incomplete type does not") {
    static_assert(px::Policy<px::Single>);
    static_assert(px::Policy<px::DataParallel<1>>);
    static_assert(px::Policy<px::DataParallel<0>>);
    static_assert(!px::Policy<NotAPolicy>);
    static_assert(!px::is_policy_v<int>);
    static_assert(px::ModuleLike<Net>);
    static_assert(px::ModuleLike<std::shared_ptr<NetImpl>>);
    static_assert(px::ModuleLike<torch::nn::Linear>);
    static_assert(!px::ModuleLike<int>);
    CHECK(px::DataParallel<3>().name() == "dp:3");
  }
}

TEST_SUITE("data_parallel") {
  TEST_CASE("DataParallel<N> on CPU matches Single: gradients and parameters after 5 steps") {
    const auto data = classification_data(31, 5);
    const px::Batch batch{data.inputs(), data.targets()};  // 31: uneven for N = 2 and 3
    const auto [grad_single, params_single] = run_steps(px::Single(torch::kCPU), batch, 5);
    SUBCASE("N = 1") {
      const auto [grad, params] = run_steps(px::DataParallel<1>(cpu_replicas(1)), batch, 5);
      CHECK(max_difference(grad, grad_single) <= 1e-5);
      CHECK(max_difference(params, params_single) <= 1e-5);
    }
    SUBCASE("N = 2") {
      const auto [grad, params] = run_steps(px::DataParallel<2>(cpu_replicas(2)), batch, 5);
      CHECK(max_difference(grad, grad_single) <= 1e-5);
      CHECK(max_difference(params, params_single) <= 1e-5);
    }
    SUBCASE("N = 3") {
      const auto [grad, params] = run_steps(px::DataParallel<3>(cpu_replicas(3)), batch, 5);
      CHECK(max_difference(grad, grad_single) <= 1e-5);
      CHECK(max_difference(params, params_single) <= 1e-5);
    }
  }

  TEST_CASE("DataParallel through the Trainer: same history and parameters as Single") {
    auto train = classification_data(200, 2);
    auto run = [&](auto policy) {
      torch::manual_seed(5);
      Net net;
      torch::optim::Adam optimizer(net->parameters(), 1e-2);
      px::Trainer<decltype(policy)> trainer(
          net, optimizer, px::TrainerOptions().epochs(3).batch_size(30).seed(4), std::move(policy));
      const auto history = trainer.fit(train, train, cross_entropy);
      return std::pair{history, flat_parameters(*net)};
    };
    const auto [history_single, params_single] = run(px::Single(torch::kCPU));
    const auto [history_dp, params_dp] = run(px::DataParallel<3>(cpu_replicas(3)));
    CHECK(max_difference(params_dp, params_single) <= 1e-5);
    CHECK(history_dp.policy == "dp:3");
    CHECK(history_dp.world_size == 3);
    for (std::size_t e = 0; e < 3; ++e) {
      CHECK(history_dp.epochs[e].train_loss ==
            doctest::Approx(history_single.epochs[e].train_loss).epsilon(1e-5));
      CHECK(history_dp.epochs[e].val_accuracy == history_single.epochs[e].val_accuracy);
    }
  }

  TEST_CASE("replicas are refreshed from the master after every step") {
    torch::manual_seed(1);
    Net net;
    auto policy = px::DataParallel<2>(cpu_replicas(2));
    policy.bind(px::make_model(net), {});
    {
      torch::NoGradGuard no_grad;
      for (auto& p : net->parameters()) p.add_(1.0);
    }
    policy.on_parameters_changed();
    // Inference is split across both replicas: it equals the master's own output only if the
    // second replica holds the master's new parameters.
    const auto x = torch::randn({8, 6});
    policy.set_training(false);
    CHECK(max_difference(policy.forward(x), net->forward(x).detach()) <= 1e-6);
  }

  TEST_CASE("a module that is not Cloneable needs a replica factory") {
    struct PlainImpl : torch::nn::Module {
      PlainImpl() { fc = register_module("fc", torch::nn::Linear(6, 3)); }
      torch::Tensor forward(const torch::Tensor& x) { return fc(x); }
      torch::nn::Linear fc{nullptr};
    };
    auto plain = std::make_shared<PlainImpl>();
    auto policy = px::DataParallel<2>(cpu_replicas(2));
    CHECK_THROWS_WITH_AS(policy.bind(px::make_model(plain), {}),
                         doctest::Contains("not torch::nn::Cloneable"), px::InputError);
    auto with_factory = px::DataParallel<2>(cpu_replicas(2).replica_factory(
        [] { return std::static_pointer_cast<torch::nn::Module>(std::make_shared<PlainImpl>()); }));
    with_factory.bind(px::make_model(plain), {});
    const auto x = torch::randn({4, 6});
    CHECK(max_difference(with_factory.forward(x), plain->forward(x).detach()) <= 1e-6);
  }
}

TEST_SUITE("data_parallel") {
  TEST_CASE("coalesced_to: one buffer per dtype, tensors back in order with their shapes") {
    const std::vector<torch::Tensor> tensors{
        torch::arange(6, torch::kFloat).reshape({2, 3}), torch::tensor({7, 8}, torch::kLong),
        torch::randn({2, 2, 3}).permute({2, 0, 1}),  // not contiguous
        torch::tensor({1.5f}), torch::tensor({9}, torch::kLong)};
    const auto moved = px::comm::coalesced_to(tensors, torch::kCPU);
    REQUIRE(moved.size() == tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      CHECK((moved[i].scalar_type() == tensors[i].scalar_type()));
      CHECK(moved[i].sizes() == tensors[i].sizes());
      CHECK(torch::equal(moved[i], tensors[i]));
    }
    // The float tensors share one buffer, the integer ones another.
    CHECK(moved[0].storage().is_alias_of(moved[3].storage()));
    CHECK(moved[1].storage().is_alias_of(moved[4].storage()));
    CHECK_FALSE(moved[0].storage().is_alias_of(moved[1].storage()));
  }
}

TEST_SUITE("errors") {
  TEST_CASE("CUDA graphs refuse a device that is not CUDA") {
    Net net;
    px::CudaGraphSingle policy(torch::Device(torch::kCPU));
    CHECK_THROWS_WITH_AS(policy.bind(px::make_model(net), {}),
                         "parallax: CUDA graphs need a CUDA device, got cpu", px::InputError);
  }

  TEST_CASE("more replicas than devices given") {
    Net net;
    auto policy = px::DataParallel<3>(cpu_replicas(2));
    CHECK_THROWS_WITH_AS(policy.bind(px::make_model(net), {}),
                         doctest::Contains("3 replicas requested but only 2 device(s) given"),
                         px::InputError);
    CHECK_THROWS_AS(px::Single().bind(px::make_model(net), {{torch::kCPU, torch::kCPU}}),
                    px::InputError);
  }

  TEST_CASE("a CUDA device that is not visible") {
    if (torch::cuda::is_available()) return;
    Net net;
    CHECK_THROWS_WITH_AS(px::Single(torch::Device(torch::kCUDA, 0)).bind(px::make_model(net), {}),
                         doctest::Contains("is not available"), px::InputError);
  }

  TEST_CASE("a rank's device: cuda:LOCAL_RANK, the one GPU it was given, else the CPU") {
    const torch::Device cpu(torch::kCPU);
    auto cuda = [](int index) { return torch::Device(torch::kCUDA, static_cast<int8_t>(index)); };
    CHECK(px::rank_device(0, 0, nullptr) == cpu);
    CHECK(px::rank_device(3, 0, "") == cpu);
    CHECK(px::rank_device(0, 1, nullptr) == cuda(0));
    CHECK(px::rank_device(3, 1, "2") == cuda(0));      // srun --gpus-per-task=1
    CHECK(px::rank_device(3, 1, nullptr) == cuda(3));  // one GPU, four ranks: refused later
    CHECK(px::rank_device(3, 1, "") == cuda(3));
    CHECK(px::rank_device(2, 4, "0,1,2,3") == cuda(2));
    CHECK(px::rank_device(5, 4, nullptr) == cuda(5));  // refused by usable_device
  }

  TEST_CASE("global batch smaller than the number of replicas") {
    Net net;
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    auto data = classification_data(20);
    px::Trainer<px::DataParallel<4>> trainer(net, optimizer, px::TrainerOptions().batch_size(3),
                                             px::DataParallel<4>(cpu_replicas(4)));
    CHECK_THROWS_WITH_AS(trainer.fit(data, cross_entropy),
                         doctest::Contains("batch size 3 is smaller than the 4 replicas"),
                         px::InputError);
  }

  TEST_CASE("empty dataset") {
    Net net;
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    px::TensorDataset empty(torch::zeros({0, 6}), torch::zeros({0}, torch::kLong));
    px::Trainer<px::Single> trainer(net, optimizer);
    CHECK_THROWS_WITH_AS(trainer.fit(empty, cross_entropy), doctest::Contains("is empty"),
                         px::InputError);
  }

  TEST_CASE("target and output shapes that do not fit") {
    Net net;
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    px::Trainer<px::Single> trainer(net, optimizer, px::TrainerOptions().batch_size(4));
    // Targets of the wrong kind for cross-entropy: [N, 2] floats against [N, 3] logits.
    px::TensorDataset wrong_targets(torch::randn({8, 6}), torch::randn({8, 2}));
    CHECK_THROWS_WITH_AS(trainer.fit(wrong_targets, cross_entropy),
                         doctest::Contains("loss function failed for output shape [4, 3]"),
                         px::InputError);
    // A loss that sees a different batch size than the model produced.
    px::TensorDataset data = classification_data(8);
    auto shifted = [](const torch::Tensor& output, const torch::Tensor& target) {
      return cross_entropy(output.narrow(0, 0, 2), target);
    };
    CHECK_THROWS_AS(trainer.fit(data, shifted), px::InputError);
    // A model whose output batch differs from the target batch.
    auto summed = torch::nn::Sequential(torch::nn::Linear(6, 3));
    torch::optim::SGD optimizer2(summed->parameters(), 0.1);
    struct Pool : torch::nn::Module {
      torch::Tensor forward(const torch::Tensor& x) { return x.sum(0, true); }
    };
    px::Trainer<px::Single> pooled(std::make_shared<Pool>(), optimizer2,
                                   px::TrainerOptions().batch_size(4));
    CHECK_THROWS_WITH_AS(pooled.fit(data, cross_entropy),
                         doctest::Contains("model output has batch size 1 but target has 4"),
                         px::InputError);
  }
}

TEST_SUITE("rendezvous") {
  using Env = std::map<std::string, std::string>;
  auto from = [](Env env) {
    return [env](const std::string& name) -> std::optional<std::string> {
      const auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional(it->second);
    };
  };

  TEST_CASE("torchrun's environment, SLURM's, explicit options, and the single-process default") {
    const auto torchrun = px::resolve_rendezvous({}, from({{"RANK", "2"},
                                                           {"WORLD_SIZE", "4"},
                                                           {"LOCAL_RANK", "0"},
                                                           {"MASTER_ADDR", "10.0.0.1"},
                                                           {"MASTER_PORT", "1234"}}));
    CHECK(torchrun.rank == 2);
    CHECK(torchrun.world_size == 4);
    CHECK(torchrun.master_addr == "10.0.0.1");
    CHECK(torchrun.master_port == 1234);
    CHECK(torchrun.source == "torchrun");
    const auto slurm = px::resolve_rendezvous({}, from({{"SLURM_PROCID", "5"},
                                                        {"SLURM_NTASKS", "8"},
                                                        {"SLURM_STEP_NUM_TASKS", "8"},
                                                        {"SLURM_LOCALID", "1"}}));
    CHECK(slurm.rank == 5);
    CHECK(slurm.world_size == 8);
    CHECK(slurm.local_rank == 1);
    CHECK(slurm.source == "slurm");
    const auto explicit_ =
        px::resolve_rendezvous(px::RendezvousOptions().rank(1).world_size(2).master_port(4000),
                               from({{"RANK", "0"}, {"WORLD_SIZE", "9"}}));
    CHECK(explicit_.rank == 1);
    CHECK(explicit_.world_size == 2);
    CHECK(explicit_.master_port == 4000);
    const auto single = px::resolve_rendezvous({}, from({}));
    CHECK(single.world_size == 1);
    CHECK(single.source == "default");
  }

  TEST_CASE("inside a SLURM allocation: only an srun step is a job; nested launchers win") {
    struct Expected {
      int64_t rank, world_size, local_rank;
      const char* source;
    };
    struct Case {
      const char* what;
      Expected expected;
      Env env;
    };
    const Case cases[] = {
        {"SLURM_PROCID and SLURM_NTASKS alone (no srun step, not a batch job): the contract's job",
         {5, 8, 1, "slurm"},
         {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}}},
        {"a batch script's shell: the allocation's variables, no srun step",
         {0, 1, 0, "default"},
         {{"ENVIRONMENT", "BATCH"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}}},
        {"an srun step of two tasks inside that batch job (with --preserve-env SLURM_NTASKS would "
         "still be the allocation's 8)",
         {1, 2, 0, "slurm"},
         {{"ENVIRONMENT", "BATCH"},
          {"SLURM_PROCID", "1"},
          {"SLURM_NTASKS", "8"},
          {"SLURM_STEP_NUM_TASKS", "2"}}},
        {"mpirun in a batch script, on one node: its ranks inherit SLURM_PROCID=0 and, from the "
         "srun that starts Open MPI's daemon (one task per node), a step of one task; mpirun's "
         "own variables describe them",
         {3, 4, 3, "mpirun"},
         {{"ENVIRONMENT", "BATCH"},
          {"SLURM_PROCID", "0"},
          {"SLURM_NTASKS", "8"},
          {"SLURM_STEP_NUM_TASKS", "1"},
          {"SLURM_LOCALID", "0"},
          {"OMPI_COMM_WORLD_RANK", "3"},
          {"OMPI_COMM_WORLD_SIZE", "4"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}}},
        {"srun --mpi=pmi2: PMI_RANK and PMI_SIZE without MPI_LOCALRANKID; SLURM's local rank",
         {3, 4, 1, "mpirun"},
         {{"PMI_RANK", "3"},
          {"PMI_SIZE", "4"},
          {"SLURM_PROCID", "3"},
          {"SLURM_STEP_NUM_TASKS", "4"},
          {"SLURM_LOCALID", "1"}}},
        {"... but not a SLURM_LOCALID that belongs to another launch (a daemon's step)",
         {3, 4, 0, "mpirun"},
         {{"PMI_RANK", "3"},
          {"PMI_SIZE", "4"},
          {"SLURM_PROCID", "0"},
          {"SLURM_STEP_NUM_TASKS", "1"},
          {"SLURM_LOCALID", "1"}}},
        {"torchrun started by srun (one per node): torchrun's ranks",
         {6, 8, 2, "torchrun"},
         {{"SLURM_PROCID", "1"},
          {"SLURM_STEP_NUM_TASKS", "2"},
          {"RANK", "6"},
          {"WORLD_SIZE", "8"},
          {"LOCAL_RANK", "2"}}},
    };
    for (const Case& c : cases) {
      INFO(c.what);
      const auto info = px::resolve_rendezvous({}, from(c.env));
      CHECK(info.rank == c.expected.rank);
      CHECK(info.world_size == c.expected.world_size);
      CHECK(info.local_rank == c.expected.local_rank);
      CHECK(info.source == std::string(c.expected.source));
    }
    CHECK_THROWS_WITH_AS(
        px::resolve_rendezvous({}, from({{"SLURM_PROCID", "2"}, {"SLURM_STEP_NUM_TASKS", "2"}})),
        doctest::Contains("rank 2 is outside world size 2"), px::InputError);
  }

  TEST_CASE("bad rendezvous input names the variable") {
    CHECK_THROWS_WITH_AS(px::resolve_rendezvous({}, from({{"RANK", "0"}})),
                         doctest::Contains("RANK and WORLD_SIZE must be set together"),
                         px::InputError);
    CHECK_THROWS_WITH_AS(px::resolve_rendezvous({}, from({{"RANK", "x"}, {"WORLD_SIZE", "2"}})),
                         doctest::Contains("RANK='x' is not a non-negative integer"),
                         px::InputError);
    CHECK_THROWS_WITH_AS(px::resolve_rendezvous({}, from({{"RANK", "2"}, {"WORLD_SIZE", "2"}})),
                         doctest::Contains("rank 2 is outside world size 2"), px::InputError);
    CHECK_THROWS_WITH_AS(
        px::resolve_rendezvous(
            {}, from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})),
        doctest::Contains("master port 70000"), px::InputError);
  }
}

TEST_SUITE("projection") {
  TEST_CASE("plan_buckets: reverse order, first cap, cap, dtype change, frozen left out") {
    auto floats = [](int64_t n) { return torch::zeros({n}, torch::requires_grad()); };
    auto frozen = torch::zeros({10});
    auto doubles =
        torch::zeros({10}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
    // bytes: 0: 400, 1: 400, 2: 2000 (over every cap), 3: frozen, 4: 80 (double), 5: 200, 6: 200
    const std::vector<torch::Tensor> parameters{floats(100), floats(100), floats(500), frozen,
                                                doubles,     floats(50),  floats(50)};
    const auto plan = px::comm::plan_buckets(parameters, 1000, 300);
    const std::vector<std::vector<std::size_t>> expected{{6}, {5}, {4}, {2}, {1, 0}};
    CHECK(plan == expected);
    CHECK(px::comm::bucket_bytes(parameters, plan) ==
          std::vector<int64_t>{200, 200, 80, 2000, 800});
  }

  TEST_CASE("project_step: hidden behind backward, exposed on a slow link, nothing on one device") {
    const std::vector<int64_t> buckets{100'000'000, 100'000'000};
    const px::comm::LinkClass fast{"fast", 100.0, 0.0}, slow{"slow", 1.0, 0.0};
    // forward 0.1 s, backward 0.2 s: buckets ready at 0.2 s and 0.3 s; each takes
    // 2 x (1/2) x 1e8 / 1e11 = 1 ms on the fast link, 100 ms on the slow one.
    const auto hidden = px::comm::project_step(0.3, buckets, 2, fast);
    CHECK(hidden.all_reduce_seconds == doctest::Approx(0.002));
    CHECK(hidden.step_seconds == doctest::Approx(0.301));
    CHECK(hidden.efficiency == doctest::Approx(0.3 / 0.301));
    const auto exposed = px::comm::project_step(0.3, buckets, 2, slow);
    CHECK(exposed.step_seconds == doctest::Approx(0.4));  // second bucket waits for the first
    CHECK(exposed.exposed_seconds == doctest::Approx(0.1));
    // 8 devices move 2 x 7/8 of the bytes; latency counts once per bucket.
    const auto eight = px::comm::project_step(0.3, buckets, 8, px::comm::LinkClass{"x", 1.0, 1000});
    CHECK(eight.all_reduce_seconds == doctest::Approx(2 * (0.001 + 1.75 * 0.1)));
    CHECK(px::comm::project_step(0.3, buckets, 1, slow).step_seconds == 0.3);
  }
}

#if PARALLAX_HAS_GLOO
TEST_SUITE("reducer") {
  TEST_CASE(
      "BucketReducer: averaged gradients written back; an unused one is zeros in its layout") {
    // One rank over Gloo: averaging changes nothing, so the gradients must come back as they were.
    auto backend = px::comm::make_backend<px::Gloo>(c10::make_intrusive<c10d::HashStore>(), 0, 1,
                                                    std::chrono::seconds(30), "127.0.0.1");
    torch::manual_seed(1);
    const auto nhwc = at::MemoryFormat::ChannelsLast;
    auto used = torch::randn({4, 3, 3, 3}).contiguous(nhwc).requires_grad_();
    auto spare = torch::randn({4, 4, 3, 3}).contiguous(nhwc).requires_grad_();
    const auto input = torch::randn({2, 3, 5, 5}).contiguous(nhwc);
    const auto expected =
        torch::autograd::grad({torch::conv2d(input, used).square().sum()}, {used})[0];
    px::comm::BucketReducer reducer({used, spare}, {"used", "spare"}, backend,
                                    px::comm::BucketOptions().find_unused_parameters(true));
    reducer.prepare(true);
    torch::conv2d(input, used).square().sum().backward();
    reducer.finish();
    CHECK(max_difference(used.grad(), expected) <= 1e-6);
    REQUIRE(spare.grad().defined());
    CHECK(torch::count_nonzero(spare.grad()).item<int64_t>() == 0);
    // As autograd would have made it: FusedAdam's fused kernel needs equal strides.
    CHECK(spare.grad().strides() == spare.strides());
  }
}
#endif
