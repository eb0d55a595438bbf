// The cases that need a CUDA device: the loader's device copies, Single, DataParallel,
// CudaGraphSingle, float16 loss scaling and Distributed<Nccl> on the GPU. Without one the
// suite exits 77, which CTest reports as skipped; tests/CMakeLists.txt shows it the GPUs
// that every other test runs without.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>

#include "support.hpp"

using namespace test;

namespace {

/// Tests that need a GPU end here with exit code 77, which CTest reports as "Skipped".
void require_cuda() {
  if (torch::cuda::is_available()) return;
  std::printf("SKIPPED: no CUDA device\n");
  std::fflush(stdout);
  std::_Exit(77);
}

/// A TCP port free on 127.0.0.1 right now (for a rendezvous store in this process).
int64_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(address.sin_port);
}

/// A fresh Net(6, hidden, 3) seeded with `seed`, trained with SGD (momentum 0.9) under `policy`
/// and validated on its training data: its parameters and the history.
template <class Policy>
std::pair<torch::Tensor, px::History> train_with_sgd(Policy policy, px::TensorDataset& data,
                                                     uint64_t seed, int64_t hidden,
                                                     const px::TrainerOptions& options) {
  torch::manual_seed(seed);
  Net net(6, hidden, 3);
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  px::Trainer<Policy> trainer(net, optimizer, options, std::move(policy));
  auto history = trainer.fit(data, data, cross_entropy);
  return {flat_parameters(*net), std::move(history)};
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("loader: CUDA batches equal the CPU ones, with and without side-stream copies") {
    require_cuda();
    auto data = classification_data(100);
    for (int64_t workers : {0, 2})
      for (bool side_stream : {true, false}) {
        CAPTURE(workers);
        CAPTURE(side_stream);
        const auto options = px::LoaderOptions().batch_size(16).seed(3).workers(workers);
        px::Loader<px::TensorDataset> on_cpu(data, options);
        px::Loader<px::TensorDataset> on_gpu(
            data, px::LoaderOptions(options).device(torch::kCUDA).copy_on_side_stream(side_stream));
        std::vector<px::Batch> expected;
        for (px::Batch& batch : on_cpu.epoch(1)) expected.push_back(batch);
        std::size_t i = 0;
        for (px::Batch& batch : on_gpu.epoch(1)) {
          REQUIRE(i < expected.size());
          CHECK(batch.input.is_cuda());
          // Used at once on the current stream: the copy must have been waited for.
          CHECK((batch.input * 2).sum().item<double>() ==
                doctest::Approx((expected[i].input * 2).sum().item<double>()));
          CHECK(torch::equal(batch.input.cpu(), expected[i].input));
          CHECK(torch::equal(batch.target.cpu(), expected[i].target));
          ++i;
        }
        CHECK(i == expected.size());
      }
  }

  TEST_CASE("Single on CUDA computes what Single on the CPU does") {
    require_cuda();
    const auto data = classification_data(64);
    const px::Batch batch{data.inputs(), data.targets()};
    const px::Batch on_gpu{batch.input.cuda(), batch.target.cuda()};
    const auto [cpu_grad, cpu_params] = run_steps(px::Single(torch::kCPU), batch, 5);
    const auto [gpu_grad, gpu_params] = run_steps(px::Single(torch::kCUDA), on_gpu, 5);
    CHECK(max_difference(gpu_grad, cpu_grad) <= 1e-5);
    CHECK(max_difference(gpu_params, cpu_params) <= 1e-4);
  }

  TEST_CASE("DataParallel<2> on CUDA (coalesced across GPUs) matches Single") {
    require_cuda();
#if PARALLAX_HAS_CUDA
    // CTest runs the DataParallel and CudaGraphSingle cases a second time under cudaMallocAsync
    // (Note [Replica streams]), and says so here: that run must get that allocator.
    if (const char* expected = std::getenv("PARALLAX_TEST_CUDA_ALLOCATOR")) {
      CHECK(c10::cuda::CUDACachingAllocator::name() == std::string(expected));
      CHECK(px::detail::allocator_reuses_per_stream() == (std::string(expected) == "native"));
    }
#endif
    const auto data = classification_data(64);
    const px::Batch batch{data.inputs(), data.targets()};
    // Two GPUs when there are two (coalesced transfers), else two replicas on one GPU.
    const torch::Device second(torch::kCUDA, torch::cuda::device_count() > 1 ? 1 : 0);
    const auto [single_grad, single_params] =
        run_steps(px::Single(torch::kCUDA), px::Batch{batch.input.cuda(), batch.target.cuda()}, 5);
    const auto [dp_grad, dp_params] = run_steps(
        px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCUDA, second})), batch, 5);
    CHECK(max_difference(dp_grad, single_grad) <= 1e-5);
    CHECK(max_difference(dp_params, single_params) <= 1e-4);
    // The batch on the first GPU, as the Trainer now delivers it when every replica is on a
    // GPU: the second replica's slice goes device to device (or stays, on one GPU).
    const auto [dp_cuda_grad, dp_cuda_params] =
        run_steps(px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCUDA, second})),
                  px::Batch{batch.input.cuda(), batch.target.cuda()}, 5);
    CHECK(max_difference(dp_cuda_grad, single_grad) <= 1e-5);
    CHECK(max_difference(dp_cuda_params, single_params) <= 1e-4);
  }

  TEST_CASE("CudaGraphSingle replays the captured step and trains like Single") {
    require_cuda();
    auto data = classification_data(100);  // batches of 16: the last one (4) runs eagerly
    auto train = [&](auto policy) {
      torch::manual_seed(4);
      Net net(6, 32, 3);
      px::FusedAdam optimizer(net->parameters(), 1e-2);
      px::Trainer<decltype(policy)> trainer(
          net, optimizer, px::TrainerOptions().epochs(3).batch_size(16).seed(1), std::move(policy));
      const auto history = trainer.fit(data, cross_entropy);
      return std::tuple(flat_parameters(*net), history, trainer.policy().name());
    };
    const auto [graphed, graphed_history, name] = train(px::CudaGraphSingle(torch::kCUDA, 2));
    const auto [eager, eager_history, unused] = train(px::Single(torch::kCUDA));
    CHECK(name == "single+graphs");
    CHECK(max_difference(graphed, eager) <= 1e-5);
    for (std::size_t e = 0; e < eager_history.epochs.size(); ++e)
      CHECK(graphed_history.epochs[e].train_loss ==
            doctest::Approx(eager_history.epochs[e].train_loss).epsilon(1e-5));
  }

  TEST_CASE("CudaGraphSingle: most steps are replays") {
    require_cuda();
    auto data = classification_data(100);
    Net net(6, 32, 3);
    px::FusedAdam optimizer(net->parameters(), 1e-2);
    px::Trainer<px::CudaGraphSingle> trainer(net, optimizer,
                                             px::TrainerOptions().epochs(3).batch_size(16),
                                             px::CudaGraphSingle(torch::kCUDA, 2));
    trainer.fit(data, cross_entropy);
    // 3 x 7 steps: 2 warm-up, and the 3 partial last batches eager; the rest replays.
    CHECK(trainer.policy().replays() == 3 * 7 - 2 - 3);
  }

  TEST_CASE("CudaGraphSingle with float16 loss scaling: replays go on while the scale moves") {
    require_cuda();
    auto data = classification_data(256);  // 16 full batches per epoch
    auto train = [&](auto policy) {
      torch::manual_seed(2);
      Net net(6, 32, 3);
      px::FusedAdam optimizer(net->parameters(), 1e-2);
      // 2^40 overflows float16: the first steps are skipped, each halving the scale.
      px::Trainer<decltype(policy)> trainer(
          px::with_autocast(px::make_model(net), at::kHalf), optimizer,
          px::TrainerOptions().epochs(3).batch_size(16).seed(1).loss_scaling(
              px::LossScalingOptions().init_scale(std::pow(2.0, 40))),
          std::move(policy));
      trainer.fit(data, cross_entropy);
      int64_t replays = -1, captures = -1;
      if constexpr (requires { trainer.policy().replays(); }) {
        replays = trainer.policy().replays();
        captures = trainer.policy().captures();
      }
      return std::tuple(flat_parameters(*net), trainer.loss_scaler()->skipped_steps(), replays,
                        captures);
    };
    const auto [graphed, graphed_skipped, replays, captures] =
        train(px::CudaGraphSingle(torch::kCUDA, 2));
    const auto [eager, eager_skipped, unused_replays, unused_captures] =
        train(px::Single(torch::kCUDA));
    CHECK(graphed_skipped > 2);  // the scale changed after the capture
    CHECK(graphed_skipped == eager_skipped);
    CHECK(captures == 1);
    CHECK(replays == 3 * 16 - 2);
    CHECK(max_difference(graphed, eager) <= 1e-3);
  }

  TEST_CASE("CudaGraphSingle: a lasting change of batch shape is captured again, a one-off not") {
    require_cuda();
    torch::manual_seed(3);
    Net net;
    px::CudaGraphSingle policy(torch::kCUDA, 1);
    policy.bind(px::make_model(net), {});
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    const auto data = classification_data(64);
    auto step = [&](int64_t n) {
      optimizer.zero_grad();
      policy.forward_backward(
          px::Batch{data.inputs().narrow(0, 0, n).cuda(), data.targets().narrow(0, 0, n).cuda()},
          cross_entropy, 1.0);
      optimizer.step();
      policy.on_parameters_changed();
    };
    // 16: eager (warm-up), captured and replayed, replayed; 4 eager; 16 replayed twice.
    for (int64_t n : {16, 16, 16, 4, 16, 16}) step(n);
    CHECK(policy.captures() == 1);
    CHECK(policy.replays() == 4);
    // 8 eager, then captured anew and replayed twice; 16 now eager.
    for (int64_t n : {8, 8, 8, 16}) step(n);
    CHECK(policy.captures() == 2);
    CHECK(policy.replays() == 6);
    CHECK(torch::isfinite(flat_parameters(*net)).all().item<bool>());
  }

  TEST_CASE("CudaGraphSingle: freezing a layer or switching a module's mode captures anew") {
    require_cuda();
    torch::manual_seed(4);
    Net net(6, 16, 3, /*dropout=*/0.5);
    px::CudaGraphSingle policy(torch::kCUDA, 1);
    policy.bind(px::make_model(net), {});
    net->train();
    torch::optim::SGD optimizer(net->parameters(), 0.1);
    const auto data = classification_data(16);
    auto step = [&] {
      optimizer.zero_grad();
      policy.forward_backward(px::Batch{data.inputs().cuda(), data.targets().cuda()}, cross_entropy,
                              1.0);
      optimizer.step();
      policy.on_parameters_changed();
    };
    for (int i = 0; i < 3; ++i) step();  // eager, captured and replayed, replayed
    CHECK(policy.captures() == 1);
    CHECK(policy.replays() == 2);

    // Frozen: the next step runs eagerly, the one after is captured; the layer stays as it was
    // (a replay of the first graph would have gone on updating it).
    auto weight = net->fc1->weight;
    weight.set_requires_grad(false);
    const auto frozen = weight.detach().clone();
    for (int i = 0; i < 3; ++i) step();
    CHECK(policy.captures() == 2);
    CHECK(policy.replays() == 4);
    CHECK_FALSE(weight.grad().defined());
    CHECK(torch::equal(weight.detach(), frozen));

    // Unfrozen again: it trains again.
    weight.set_requires_grad(true);
    for (int i = 0; i < 2; ++i) step();
    CHECK(policy.captures() == 3);
    CHECK(policy.replays() == 5);
    CHECK_FALSE(torch::equal(weight.detach(), frozen));

    // Dropout switched to eval mode: a graph of its own (the last one still drops units).
    net->drop->eval();
    for (int i = 0; i < 2; ++i) step();
    CHECK(policy.captures() == 4);
    CHECK(policy.replays() == 6);
  }

#if PARALLAX_HAS_CUDA
  // The streams of DataParallel and CudaGraphSingle (Note [Owned streams]).
  // Under the native allocator a freed tensor never touches its stream; the cudaMallocAsync run
  // (tests/CMakeLists.txt) is the one that would free on a destroyed stream.
  TEST_CASE("OwnedStream: held alone, freed through after its owner ended, handed on") {
    require_cuda();
    torch::Tensor kept;
    cudaStream_t first = nullptr;
    {
      px::detail::OwnedStream a(0), b(0);
      CHECK(a.get() != b.get());
      CHECK(a.get() != c10::cuda::getCurrentCUDAStream(0));
      first = a.get().stream();
      c10::cuda::CUDAStreamGuard guard(a.get());
      kept = torch::ones({1 << 20}, torch::kCUDA);  // allocated on a's stream
    }
    // Freed after its owner ended: cudaMallocAsync frees on the allocating stream, still valid.
    kept = torch::Tensor();
    torch::cuda::synchronize();
    px::detail::OwnedStream c(0);  // the stream given back last (a, destroyed after b) again
    CHECK(c.get().stream() == first);
    c10::cuda::CUDAStreamGuard guard(c.get());
    CHECK(torch::ones({4}, torch::kCUDA).sum().item<float>() == 4.0f);
  }
#endif

  TEST_CASE("DataParallel<2> on one GPU in the Trainer (two replicas per GPU) = Single") {
    require_cuda();
    auto data = classification_data(200);
    // 5 epochs x (train + validation) x 4 workers: the loader's copy streams go round torch's
    // pool of 32 streams, which must never hand them the replicas' streams.
    const auto options = px::TrainerOptions().epochs(5).batch_size(32).seed(1).workers(4);
    const auto [dp, dp_history] = train_with_sgd(
        px::DataParallel<2>(px::DataParallelOptions().devices({torch::kCUDA, torch::kCUDA})), data,
        4, 64, options);
    const auto [single, single_history] =
        train_with_sgd(px::Single(torch::kCUDA), data, 4, 64, options);
    CHECK(max_difference(dp, single) <= 1e-4);
    CHECK(dp_history.epochs.back().val_loss ==
          doctest::Approx(single_history.epochs.back().val_loss).epsilon(1e-4));
  }

#if PARALLAX_HAS_NCCL
  TEST_CASE("Distributed<Nccl> at world size 1 trains like Single on the GPU") {
    require_cuda();
    auto data = classification_data(128);
    const auto options = px::TrainerOptions().epochs(2).batch_size(16).seed(1);
    const auto rendezvous = px::RendezvousOptions()
                                .rank(0)
                                .world_size(1)
                                .master_addr("127.0.0.1")
                                .master_port(free_port());
    const auto [nccl, nccl_history] = train_with_sgd(
        px::Distributed<px::Nccl>(
            px::DistributedOptions().rendezvous(rendezvous).timeout(std::chrono::seconds(60))),
        data, 5, 32, options);
    const auto [single, single_history] =
        train_with_sgd(px::Single(torch::kCUDA), data, 5, 32, options);
    CHECK(nccl_history.policy == "ddp:nccl");
    CHECK(max_difference(nccl, single) <= 1e-6);
    CHECK(nccl_history.epochs.back().val_accuracy == single_history.epochs.back().val_accuracy);
  }
#endif

  TEST_CASE("float16 autocast with loss scaling on CUDA: overflowing steps skipped, then trains") {
    require_cuda();
    auto data = classification_data(256);
    torch::manual_seed(2);
    Net net(6, 32, 3);
    torch::optim::Adam optimizer(net->parameters(), 1e-2);
    px::Trainer<px::Single> trainer(
        px::with_autocast(px::make_model(net), at::kHalf), optimizer,
        px::TrainerOptions()
            .epochs(4)
            .batch_size(16)
            .devices({torch::kCUDA})
            .loss_scaling(px::LossScalingOptions().init_scale(std::pow(2.0, 40))));
    const auto history = trainer.fit(data, cross_entropy);
    CHECK(trainer.loss_scaler()->device().is_cuda());  // its state never leaves the GPU
    CHECK(trainer.loss_scaler()->skipped_steps() > 0);
    CHECK(torch::isfinite(flat_parameters(*net)).all().item<bool>());
    CHECK(history.epochs.back().train_loss < history.epochs.front().train_loss);
  }
}
