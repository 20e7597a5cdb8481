// The engine behind http::StartServer: cpp-httplib (Debian's compiled library, poll(2) based),
// a thread for each open connection. Only this file knows httplib.
#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/http/server.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/request_id.h"
#include "common/secret.h"

namespace qsign::http {
namespace {

// The request being handled on this worker thread, from routing until its response is written.
thread_local std::optional<request_id::ScopedRequestId> request_scope;

// httplib hands each accepted connection to its task queue, and a worker serves it until it
// closes: a keep-alive client that sends nothing holds its worker for the keep-alive timeout, one
// that sends a byte a second holds it for as long as it likes. With a fixed pool (httplib's
// ThreadPool) eight such clients stall the port. Here a connection gets a new thread whenever
// none is idle, up to `max_threads`; threads above `min_threads` end after an idle while.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  ConnectionThreads(int min_threads, int max_threads)
      : state_(std::make_shared<State>()), min_threads_(min_threads), max_threads_(max_threads) {
    std::lock_guard<std::mutex> lock(state_->mu);
    for (int i = 0; i < min_threads_; ++i) StartThread();
  }
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->jobs.push_back(std::move(fn));
    if (state_->jobs.size() > static_cast<size_t>(state_->idle) && state_->threads < max_threads_) {
      StartThread();
    }
    state_->cv.notify_one();
  }

  // Called by httplib once its accept loop has ended: the connections still open are served to
  // their end, then every thread has returned.
  void shutdown() override {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->shutdown = true;
    state_->cv.notify_all();
    state_->done.wait(lock, [this] { return state_->threads == 0; });
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;    // A job or shutdown.
    std::condition_variable done;  // A thread ended.
    std::deque<std::function<void()>> jobs;
    int threads = 0;
    int idle = 0;
    bool shutdown = false;
  };
  static constexpr std::chrono::seconds kIdleEnd{10};

  // Holds state->mu. Detached: the thread keeps the state alive by itself.
  void StartThread() {
    ++state_->threads;
    std::thread([state = state_, min = min_threads_] {
      std::unique_lock<std::mutex> lock(state->mu);
      for (;;) {
        ++state->idle;
        const bool woken = state->cv.wait_for(
            lock, kIdleEnd, [&] { return !state->jobs.empty() || state->shutdown; });
        --state->idle;
        if (state->jobs.empty() && (state->shutdown || (!woken && state->threads > min))) break;
        if (state->jobs.empty()) continue;
        std::function<void()> job = std::move(state->jobs.front());
        state->jobs.pop_front();
        lock.unlock();
        job();
        job = nullptr;  // Its captures go before the lock is taken again.
        lock.lock();
      }
      --state->threads;
      state->done.notify_all();
    }).detach();
  }

  const std::shared_ptr<State> state_;
  const int min_threads_;
  const int max_threads_;
};

// Server certificate, key and (optionally) client verification, errors naming the TlsFiles
// fields.
absl::Status ConfigureTls(SSL_CTX* ctx, const TlsFiles& tls) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (tls.cert_file.empty()) return absl::InvalidArgumentError(tls.cert_field + ": required");
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(tls.cert_field, ": ", tls.cert_file, ": cannot load a PEM certificate chain"));
  }
  if (tls.key_file.empty()) return absl::InvalidArgumentError(tls.key_field + ": required");
  absl::StatusOr<SecretString> key = ReadSecretFile(tls.key_file);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat(tls.key_field, ": ", key.status().message()));
  }
  OsslPtr<BIO> bio(BIO_new_mem_buf(key->value().data(), static_cast<int>(key->value().size())));
  OsslPtr<EVP_PKEY> pkey(
      bio == nullptr ? nullptr
                     : PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")));
  if (pkey == nullptr || SSL_CTX_use_PrivateKey(ctx, pkey.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        tls.key_field, ": ", tls.key_file, ": not an unencrypted PEM key of ", tls.cert_field));
  }
  if (!tls.client_ca_file.empty()) {
    OsslPtr<STACK_OF(X509_NAME)> names(SSL_load_client_CA_file(tls.client_ca_file.c_str()));
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(tls.client_ca_field, ": ", tls.client_ca_file,
                                                     ": cannot load PEM CA certificates"));
    }
    SSL_CTX_set_client_CA_list(ctx, names.release());  // Takes ownership of names.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return absl::OkStatus();
}

// Our view of httplib's request; it borrows from `req`.
Request ViewOf(const httplib::Request& req) {
  Request out;
  out.method = req.method;
  out.path = req.path;
  out.body = req.body;
  out.remote_address = req.remote_addr;
  const std::string_view path = req.path;
  for (size_t i = 0; i < req.matches.size(); ++i) {
    if (!req.matches[i].matched) {
      out.matches.emplace_back();
      continue;
    }
    out.matches.push_back(path.substr(static_cast<size_t>(req.matches.position(i)),
                                      static_cast<size_t>(req.matches.length(i))));
  }
  out.headers.reserve(req.headers.size());
  for (const auto& [name, value] : req.headers) out.headers.emplace_back(name, value);
  // httplib parses the query and a urlencoded form body into params, multipart parts into files.
  for (const auto& [name, value] : req.params) out.params.emplace_back(name, value);
  for (const auto& [name, part] : req.files) {
    out.files.push_back({.name = part.name,
                         .filename = part.filename,
                         .content_type = part.content_type,
                         .content = part.content});
  }
  return out;
}

void WriteTo(Response&& from, httplib::Response& to) {
  to.status = from.status;
  for (auto& [name, value] : from.headers) to.set_header(name, value);
  if (!from.body.empty() || !from.content_type.empty()) {
    to.headers.erase("Content-Type");
    to.body = std::move(from.body);
    to.set_header("Content-Type", from.content_type);
  }
}

void LogException(const std::string& name, std::string_view path, std::string_view what) {
  Log(LogLevel::kError, name, "handler failed",
      {{"path", path.substr(0, 128)}, {"exception", what}});
}

class HttplibServer final : public Server {
 public:
  HttplibServer(std::unique_ptr<httplib::Server> server, std::string scheme, std::string host)
      : server_(std::move(server)), scheme_(std::move(scheme)), host_(std::move(host)) {}
  ~HttplibServer() override { Stop(); }

  absl::Status Listen(int port) {
    // httplib's default sets SO_REUSEPORT, which lets a second process bind the same port and
    // take half the connections; SO_REUSEADDR alone only allows a restart over TIME_WAIT.
    socket_t listening = -1;
    server_->set_socket_options([&listening](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listening = sock;
    });
    port_ = port == 0 ? server_->bind_to_any_port(host_)
                      : (server_->bind_to_port(host_, port) ? port : -1);
    // httplib listens with a backlog of 5: a burst of connections (or a moment when the accept
    // thread is not scheduled) fills it, the kernel drops the next SYNs and those clients retry
    // only after a second. listen() again on the bound socket only changes the backlog.
    if (port_ > 0 && listening >= 0) ::listen(listening, SOMAXCONN);
    if (port_ <= 0) {
      return absl::UnavailableError(absl::StrCat(
          "HTTP: cannot listen on ", host_, ":", port,
          " (address in use by another process, e.g. a qsignd already running, or not local)"));
    }
    thread_ = std::thread([this] {
      server_->listen_after_bind();
      listen_returned_.store(true);
    });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string base_url() const override { return absl::StrCat(scheme_, "://", host_, ":", port_); }

  void Stop() override {
    std::call_once(stopped_, [this] {
      if (thread_.joinable()) {
        // stop() is a no-op until the listener runs: let it start first (it does within
        // microseconds unless listening failed).
        for (int i = 0; i < 5000 && !server_->is_running() && !listen_returned_.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        server_->stop();
        thread_.join();
      }
    });
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  const std::string scheme_;
  const std::string host_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
  std::once_flag stopped_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options,
                                                    std::vector<Route> routes) {
  std::unique_ptr<httplib::Server> engine;
  if (options.tls) {
    absl::Status configured = absl::InternalError("tls: TLS context not created");
    auto https = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
      configured = ConfigureTls(&ctx, options.tls_files);
      return configured.ok();
    });
    if (!configured.ok()) return configured;
    if (!https->is_valid()) return absl::InternalError("tls: cannot create the TLS context");
    engine = std::move(https);
  } else {
    engine = std::make_unique<httplib::Server>();
  }
  httplib::Server& svr = *engine;
  const int threads = options.threads > 0 ? options.threads : 8;
  const int max_connections = std::max(threads, options.max_connections);
  svr.new_task_queue = [threads, max_connections] {
    return new ConnectionThreads(threads, max_connections);
  };
  svr.set_payload_max_length(options.max_body_bytes);
  const auto seconds_and_micros = [](absl::Duration d) {
    const int64_t micros = absl::ToInt64Microseconds(d);
    return std::make_pair(static_cast<time_t>(micros / 1000000),
                          static_cast<time_t>(micros % 1000000));
  };
  const auto [read_s, read_us] = seconds_and_micros(options.read_timeout);
  svr.set_read_timeout(read_s, read_us);
  const auto [write_s, write_us] = seconds_and_micros(options.write_timeout);
  svr.set_write_timeout(write_s, write_us);
  svr.set_tcp_nodelay(options.tcp_nodelay);
  svr.set_keep_alive_max_count(static_cast<size_t>(std::max(1, options.keep_alive_max_requests)));

  if (options.request_ids) {
    svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      std::string id = request_id::AcceptOrGenerate(req.get_header_value(request_id::kHttpHeader));
      res.set_header(request_id::kHttpHeader, id);
      request_scope.emplace(std::move(id));
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Runs before every response is written, routed or not (a 413 is refused before routing).
    svr.set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      request_scope.reset();
      if (!res.has_header(request_id::kHttpHeader)) {
        res.set_header(request_id::kHttpHeader,
                       request_id::AcceptOrGenerate(req.get_header_value(request_id::kHttpHeader)));
      }
    });
  }

  for (Route& route : routes) {
    httplib::Server::Handler handler = [name = options.name, h = std::move(route.handler)](
                                           const httplib::Request& req, httplib::Response& res) {
      const Request request = ViewOf(req);
      Response response;
      try {
        h(request, response);
      } catch (const std::exception& e) {
        LogException(name, request.path, e.what());
        response = Response{.status = 500};
      } catch (...) {
        LogException(name, request.path, "unknown exception");
        response = Response{.status = 500};
      }
      WriteTo(std::move(response), res);
    };
    if (route.method == "GET") {
      svr.Get(route.pattern, std::move(handler));
    } else if (route.method == "POST") {
      svr.Post(route.pattern, std::move(handler));
    } else if (route.method == "PUT") {
      svr.Put(route.pattern, std::move(handler));
    } else if (route.method == "DELETE") {
      svr.Delete(route.pattern, std::move(handler));
    } else if (route.method == "PATCH") {
      svr.Patch(route.pattern, std::move(handler));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("HTTP route ", route.pattern, ": unknown method ", route.method));
    }
  }

  if (options.on_error) {
    svr.set_error_handler(httplib::Server::HandlerWithResponse(
        [on_error = options.on_error](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          const Request request = ViewOf(req);
          Response response{.status = res.status};
          on_error(request, response);
          WriteTo(std::move(response), res);
          return httplib::Server::HandlerResponse::Handled;
        }));
  }
  // A safety net only: handlers are wrapped above, but nothing from a client may crash us.
  svr.set_exception_handler([name = options.name](const httplib::Request& req,
                                                  httplib::Response& res,
                                                  const std::exception_ptr&) {
    LogException(name, req.path, "exception outside a handler");
    res.status = 500;
  });

  auto server = std::make_unique<HttplibServer>(std::move(engine), options.tls ? "https" : "http",
                                                options.host);
  if (auto s = server->Listen(options.port); !s.ok()) return s;
  return server;
}

}  // namespace qsign::http
