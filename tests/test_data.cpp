// Index pipeline and Loader.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "support.hpp"

using namespace test;

TEST_SUITE("pipeline") {
  TEST_CASE("epoch order: a permutation, equal for equal (seed, epoch), different across epochs") {
    const auto a = px::epoch_order(100, 42, 0, true);
    const auto b = px::epoch_order(100, 42, 0, true);
    const auto c = px::epoch_order(100, 42, 1, true);
    const auto d = px::epoch_order(100, 43, 0, true);
    CHECK(a == b);
    CHECK(a != c);
    CHECK(a != d);
    auto sorted = a;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 100; ++i) CHECK(sorted[static_cast<std::size_t>(i)] == i);
    const auto identity = px::epoch_order(5, 42, 3, false);
    CHECK((identity == px::Indices{0, 1, 2, 3, 4}));
  }

  TEST_CASE("epoch order is torch.randperm with a generator seeded seed + epoch") {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(17 + 5);
    const auto expected = torch::randperm(50, generator, torch::kLong);
    const auto order = px::epoch_order(50, 17, 5, true);
    for (int64_t i = 0; i < 50; ++i)
      CHECK(order[static_cast<std::size_t>(i)] == expected[i].item<int64_t>());
  }

  TEST_CASE("shards cover every index exactly once when the size divides evenly") {
    for (int64_t world : {1, 2, 3, 4, 6}) {
      const auto order = px::epoch_order(12, 3, 0, true);
      std::multiset<int64_t> seen;
      for (int64_t rank = 0; rank < world; ++rank) {
        const auto shard = px::shard_indices(order, {rank, world}, false);
        CHECK(static_cast<int64_t>(shard.size()) == 12 / world);
        seen.insert(shard.begin(), shard.end());
      }
      CHECK(seen.size() == 12);
      for (int64_t i = 0; i < 12; ++i) CHECK(seen.count(i) == 1);
    }
  }

  TEST_CASE("uneven shards: padding wraps around, drop_last cuts the tail") {
    const px::Indices order{9, 8, 7, 6, 5, 4, 3, 2, 1, 0};  // 10 examples, world 4
    // Padded to 12: the first two indices repeat, every rank gets 3 (DistributedSampler).
    CHECK((px::shard_indices(order, {0, 4}, false) == px::Indices{9, 5, 1}));
    CHECK((px::shard_indices(order, {1, 4}, false) == px::Indices{8, 4, 0}));
    CHECK((px::shard_indices(order, {2, 4}, false) == px::Indices{7, 3, 9}));
    CHECK((px::shard_indices(order, {3, 4}, false) == px::Indices{6, 2, 8}));
    // drop_last: cut to 8, every rank gets 2, nothing repeats.
    CHECK((px::shard_indices(order, {0, 4}, true) == px::Indices{9, 5}));
    CHECK((px::shard_indices(order, {3, 4}, true) == px::Indices{6, 2}));
    // More ranks than examples: wrap-around several times.
    CHECK((px::shard_indices(px::Indices{0, 1}, {4, 5}, false) == px::Indices{0}));
    CHECK_THROWS_AS(px::shard_indices(order, {4, 4}, false), px::InputError);
  }

  TEST_CASE("batches: partial last batch unless drop_last") {
    const px::Indices shard{0, 1, 2, 3, 4, 5, 6};
    const auto kept = px::batch_indices(shard, 3, false);
    REQUIRE(kept.size() == 3);
    CHECK((kept[2] == px::Indices{6}));
    const auto dropped = px::batch_indices(shard, 3, true);
    REQUIRE(dropped.size() == 2);
    CHECK((dropped[1] == px::Indices{3, 4, 5}));
    CHECK(px::batch_count(7, 3, false) == 3);
    CHECK(px::batch_count(7, 3, true) == 2);
  }
}

TEST_SUITE("loader") {
  TEST_CASE("loader yields the planned batches in order, collated, for any worker count") {
    RecordingDataset data(23);
    for (int64_t workers : {0, 1, 3}) {
      px::Loader loader(data, px::LoaderOptions().batch_size(5).seed(9).workers(workers));
      CHECK(loader.batches_per_epoch() == 5);
      CHECK(loader.samples_per_epoch() == 23);
      const auto plan = loader.plan(2);
      std::size_t b = 0;
      std::set<int64_t> seen;
      for (px::Batch& batch : loader.epoch(2)) {
        REQUIRE(b < plan.size());
        CHECK((batch.input.sizes() == torch::IntArrayRef{static_cast<int64_t>(plan[b].size()), 2}));
        for (std::size_t i = 0; i < plan[b].size(); ++i) {
          CHECK(batch.target[static_cast<int64_t>(i)].item<int64_t>() == plan[b][i]);
          seen.insert(plan[b][i]);
        }
        ++b;
      }
      CHECK(b == plan.size());
      CHECK(seen.size() == 23);
    }
  }

  TEST_CASE("sharded loaders together see every example once per epoch") {
    RecordingDataset data(40);
    std::map<int64_t, int> count;
    for (int64_t rank = 0; rank < 4; ++rank) {
      px::Loader loader(data, px::LoaderOptions().batch_size(3).shard({rank, 4}).workers(2));
      CHECK(loader.samples_per_epoch() == 10);
      for (px::Batch& batch : loader.epoch(1))
        for (int64_t i = 0; i < batch.size(); ++i) ++count[batch.target[i].item<int64_t>()];
    }
    CHECK(count.size() == 40);
    for (const auto& [index, times] : count) CHECK(times == 1);
  }

  TEST_CASE("drop_last and padding sizes") {
    RecordingDataset data(10);
    px::Loader padded(data, px::LoaderOptions().batch_size(2).shard({1, 3}));
    CHECK(padded.samples_per_epoch() == 4);  // ceil(10 / 3)
    CHECK(padded.batches_per_epoch() == 2);
    px::Loader dropped(data, px::LoaderOptions().batch_size(2).shard({1, 3}).drop_last(true));
    CHECK(dropped.samples_per_epoch() == 2);  // 10 // 3 = 3 per rank, one full batch of 2
    CHECK(dropped.batches_per_epoch() == 1);
    int64_t batches = 0;
    for (px::Batch& batch : dropped.epoch(0)) {
      CHECK(batch.size() == 2);
      ++batches;
    }
    CHECK(batches == 1);
  }

  TEST_CASE("prefetch window bounds the batches held ahead of a slow consumer") {
    RecordingDataset data(64);
    px::Loader loader(data, px::LoaderOptions().batch_size(2).workers(4).prefetch(3));
    auto epoch = loader.epoch(0);
    int64_t batches = 0;
    for (px::Batch& batch : epoch) {
      (void)batch;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ++batches;
    }
    CHECK(batches == 32);
    CHECK(epoch.max_outstanding() >= 1);
    CHECK(epoch.max_outstanding() <= 3);
  }

  TEST_CASE("a failing example surfaces as an exception, not a hang; early exit stops workers") {
    RecordingDataset data(30);
    data.fail_at = 13;
    px::Loader loader(data, px::LoaderOptions().batch_size(4).shuffle(false).workers(3));
    auto consume = [&] {
      for (px::Batch& batch : loader.epoch(0)) (void)batch;
    };
    CHECK_THROWS_WITH(consume(), "broken example");
    // Leaving an epoch after one batch joins the workers cleanly.
    for (px::Batch& batch : loader.epoch(1)) {
      (void)batch;
      break;
    }
  }

  TEST_CASE("batch memory: a tensor is handed out again only when nothing else refers to it") {
    px::BatchMemory memory(/*pinned=*/false, /*keep=*/3);
    auto first = memory.empty({4, 3}, torch::kFloat);
    const void* first_address = first.data_ptr();
    auto second = memory.empty({4, 3}, torch::kFloat);  // first is still held: fresh memory
    CHECK(second.data_ptr() != first_address);
    auto view = first.narrow(0, 0, 2);
    first.reset();
    CHECK(memory.empty({4, 3}, torch::kFloat).data_ptr() != first_address);  // a view holds it
    view.reset();
    CHECK(memory.empty({4, 3}, torch::kLong).data_ptr() != first_address);  // another dtype
    CHECK(memory.empty({4, 3}, torch::kFloat).data_ptr() == first_address);
    CHECK(memory.reused() == 1);
    // A batch an autograd graph saved is held by the graph.
    auto input = memory.empty({4, 3}, torch::kFloat).fill_(1);
    auto weight = torch::ones({3}, torch::requires_grad());
    auto loss = (input * weight).sum();
    const void* saved = input.data_ptr();
    input.reset();
    auto during = memory.empty({4, 3}, torch::kFloat);
    CHECK(during.data_ptr() != saved);
    loss.backward();
    loss.reset();
    during.reset();
    CHECK(memory.empty({4, 3}, torch::kFloat).data_ptr() == saved);
  }

  TEST_CASE("the loader recycles the memory of batches the consumer let go, never of held ones") {
    RecordingDataset data(40);
    for (int64_t workers : {0, 2}) {
      px::Loader loader(data, px::LoaderOptions().batch_size(4).workers(workers).shuffle(false));
      std::set<const void*> addresses;
      for (int64_t epoch = 0; epoch < 3; ++epoch)
        for (px::Batch& batch : loader.epoch(epoch)) addresses.insert(batch.input.data_ptr());
      CHECK(loader.memory().reused() > 0);
      // 30 batches; the memory of at most prefetch + workers + 2 of them exists at once.
      CHECK(addresses.size() <= static_cast<std::size_t>(4 + workers + 2));
      // Batches kept by the consumer stay as they were: none is written over.
      std::vector<px::Batch> kept;
      for (px::Batch& batch : loader.epoch(0)) kept.push_back(batch);
      REQUIRE(kept.size() == 10u);
      for (std::size_t b = 0; b < kept.size(); ++b)
        for (int64_t i = 0; i < 4; ++i)
          CHECK(kept[b].target[i].item<int64_t>() == static_cast<int64_t>(b) * 4 + i);
    }
  }

  TEST_CASE("bad loader input: empty dataset, zero batch, examples of different shapes") {
    RecordingDataset empty(0);
    CHECK_THROWS_WITH_AS(px::Loader(empty, px::LoaderOptions()),
                         "parallax: dataset is empty (0 examples)", px::InputError);
    RecordingDataset data(5);
    CHECK_THROWS_AS(px::Loader(data, px::LoaderOptions().batch_size(0)), px::InputError);
    CHECK_THROWS_AS(px::Loader(data, px::LoaderOptions().batch_size(8).drop_last(true)),
                    px::InputError);
    px::TensorDataset ragged(torch::zeros({4, 3}), torch::zeros({4}));
    struct Ragged : torch::data::datasets::Dataset<Ragged> {
      torch::data::Example<> get(std::size_t i) override {
        return {torch::zeros({static_cast<int64_t>(i) + 1}), torch::tensor(0)};
      }
      std::optional<std::size_t> size() const override { return 4; }
    } ragged_shapes;
    px::Loader loader(ragged_shapes, px::LoaderOptions().batch_size(4).workers(0));
    auto consume = [&] {
      for (px::Batch& batch : loader.epoch(0)) (void)batch;
    };
    CHECK_THROWS_AS(consume(), px::InputError);
  }
}
