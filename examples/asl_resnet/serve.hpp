// asl_resnet serve: try a trained model in a browser. One self-contained page (GET /), a JSON
// API (POST /predict, GET /healthz), served by cpp-httplib's thread pool over one model shared
// read-only (or a pool of copies: --instances). No file is ever read or written at request time:
// the model directory is loaded once at start-up and the page is compiled in.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <parallax/data/image_folder.hpp>
#include <parallax/parallax.hpp>

#include "inference.hpp"
#include "serve_page.hpp"

namespace asl {

struct ServeArgs {
  std::string model, host = "127.0.0.1";
  int port = 8080, threads = 4, instances = 1;
  int64_t max_upload_mb = 10, max_pixels = 40'000'000;
};

namespace detail {

inline void send_json(httplib::Response& response, int status, const nlohmann::json& body) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

/// The encoded image of a request: multipart field "image", or a raw image/* body; empty
/// optional when the request carries neither.
inline std::optional<std::string> uploaded_image(const httplib::Request& request) {
  if (request.is_multipart_form_data()) {
    if (!request.has_file("image")) return std::nullopt;
    return request.get_file_value("image").content;
  }
  const std::string type = request.get_header_value("Content-Type");
  if (type.rfind("image/", 0) == 0 || type == "application/octet-stream") return request.body;
  return std::nullopt;
}

}  // namespace detail

/// The model lent to request threads: with one instance, shared read-only by all of them (an
/// eval-mode forward under NoGradGuard mutates nothing); with more, a pool of copies, each
/// request borrowing a free one. bench/serve_load.py measures which is faster (docs/serve.md).
class ModelPool {
 public:
  ModelPool(const std::filesystem::path& dir, int instances) {
    for (int i = 0; i < std::max(1, instances); ++i)
      models_.push_back(std::make_unique<TrainedModel>(dir));
    for (auto& model : models_) free_.push_back(model.get());
  }

  template <class Use>
  auto with(Use&& use) {
    if (models_.size() == 1) return use(*models_.front());
    TrainedModel* model = nullptr;
    {
      std::unique_lock lock(mutex_);
      returned_.wait(lock, [&] { return !free_.empty(); });
      model = free_.back();
      free_.pop_back();
    }
    struct GiveBack {
      ModelPool& pool;
      TrainedModel* model;
      ~GiveBack() {
        {
          std::lock_guard lock(pool.mutex_);
          pool.free_.push_back(model);
        }
        pool.returned_.notify_one();
      }
    } give_back{*this, model};
    return use(*model);
  }

  const TrainedModel& front() const { return *models_.front(); }
  std::size_t size() const { return models_.size(); }

 private:
  std::vector<std::unique_ptr<TrainedModel>> models_;
  std::vector<TrainedModel*> free_;
  std::mutex mutex_;
  std::condition_variable returned_;
};

inline int serve(const ServeArgs& a) {
  // SIGINT/SIGTERM stop the server cleanly: one thread waits for them, every other thread
  // blocks them — so they are blocked first, before torch and httplib start their threads
  // (which inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ModelPool pool(a.model, a.instances);
  const TrainedModel& model = pool.front();
  // Requests run on `threads` pool threads; torch's own intra-op threads share the rest.
  torch::set_num_threads(
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, a.threads)));

  httplib::Server server;
  server.new_task_queue = [threads = a.threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  server.set_payload_max_length(static_cast<std::size_t>(a.max_upload_mb) << 20);
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);

  server.Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(serve_page(), "text/html; charset=utf-8");
  });
  server.Get("/healthz", [&](const httplib::Request&, httplib::Response& response) {
    detail::send_json(response, 200,
                      {{"status", "ok"},
                       {"arch", model.arch()},
                       {"classes", model.classes()},
                       {"image_size", model.image_size()}});
  });
  server.Post("/predict", [&](const httplib::Request& request, httplib::Response& response) {
    const auto start = std::chrono::steady_clock::now();
    const std::optional<std::string> image = detail::uploaded_image(request);
    if (!image)
      return detail::send_json(response, 400,
                               {{"error",
                                 "send an image as multipart field 'image' or as an image/jpeg or "
                                 "image/png body"}});
    torch::Tensor probabilities;
    try {
      const auto pixels =
          parallax::decode_image(reinterpret_cast<const uint8_t*>(image->data()), image->size(),
                                 model.image_size(), "upload", a.max_pixels);
      probabilities =
          pool.with([&](const TrainedModel& instance) { return instance.probabilities(pixels); });
    } catch (const parallax::InputError& error) {
      return detail::send_json(response, 400,
                               {{"error", parallax::detail::quoted_message(error.what())}});
    }
    nlohmann::json top = nlohmann::json::array();
    for (const auto& p : model.top(probabilities[0], 3))
      top.push_back({{"label", p.label}, {"probability", p.probability}});
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    detail::send_json(response, 200, {{"top", top}, {"milliseconds", ms}});
  });
  // Known paths with another method: 405 with Allow; everything else: 404 (below).
  auto not_allowed = [](const char* allow) {
    return [allow](const httplib::Request&, httplib::Response& response) {
      response.set_header("Allow", allow);
      detail::send_json(response, 405,
                        {{"error", std::string("method not allowed; use ") + allow}});
    };
  };
  for (const auto& [path, allow] :
       {std::pair{"/", "GET"}, std::pair{"/healthz", "GET"}, std::pair{"/predict", "POST"}}) {
    if (std::string(allow) == "GET") server.Post(path, not_allowed(allow));
    if (std::string(allow) == "POST") server.Get(path, not_allowed(allow));
    server.Put(path, not_allowed(allow));
    server.Delete(path, not_allowed(allow));
    server.Patch(path, not_allowed(allow));
  }
  server.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty()) return;
    const char* reason = response.status == 404   ? "not found"
                         : response.status == 413 ? "upload too large"
                                                  : "bad request";
    detail::send_json(response, response.status, {{"error", reason}});
  });
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
        std::string message = "internal error";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          message = parallax::detail::first_line(e.what());
        } catch (...) {
        }
        detail::send_json(response, 500, {{"error", message}});
      });

  // cpp-httplib's default socket options set SO_REUSEPORT, with which a second server binds the
  // same port and the kernel splits the connections between the two: only SO_REUSEADDR here (a
  // restart may bind while old connections linger), so a port in use is refused.
  server.set_socket_options([](socket_t socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  parallax::detail::require(server.bind_to_port(a.host, a.port), "cannot listen on ", a.host, ":",
                            a.port, " (--host/--port: in use or not an address of this machine)");
  // stop() only acts on a running server: a signal that comes before listening starts waits
  // for it.
  std::atomic<bool> finished{false};
  std::thread stopper([&] {
    int received = 0;
    sigwait(&signals, &received);
    while (!finished) {
      if (server.is_running()) {
        server.stop();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  std::printf(
      "serving http://%s:%d/ (model %s: %s, %zu classes, %lld px; %d threads, %zu instance%s)\n",
      a.host.c_str(), a.port, a.model.c_str(), model.arch().c_str(), model.classes().size(),
      static_cast<long long>(model.image_size()), a.threads, pool.size(),
      pool.size() == 1 ? " shared" : "s pooled");
  std::fflush(stdout);
  const bool listened = server.listen_after_bind();
  finished = true;
  pthread_kill(stopper.native_handle(),
               SIGTERM);  // wakes it if no signal came (harmless if one did)
  stopper.join();
  if (!listened) throw std::runtime_error("serve: the server stopped with an error");
  return 0;
}

}  // namespace asl
