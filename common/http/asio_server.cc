// The engine behind http::StartServer: Boost.Asio's event loop (epoll) with Boost.Beast's
// HTTP/1.1 parser, and a fixed pool of worker threads for the handlers (docs/decisions/
// http-server.md says why). Only this file knows Asio and Beast.
//
// A connection costs a socket and a few kilobytes, never a thread: the I/O threads read and parse
// requests and write answers for every connection; a complete request goes to the worker pool,
// whose answer comes back to the I/O thread. Idle, slow and over-sized clients are cut off by
// deadlines and limits without a worker ever waiting on them.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/http/server.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/request_id.h"
#include "common/secret.h"
#include "common/strings.h"

namespace qsign::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;
// Every connection's handlers run on the one event-loop thread, so they need no strand; and the
// executor's type is concrete, not Asio's type-erased any_io_executor: every operation copies and
// queries its executor. The type erasure was ~11 % and then the strands ~9 % of the event loop's
// samples on cached OCSP answers (docs/PERFORMANCE.md, session 7).
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using TcpStream = beast::basic_stream<tcp, Executor>;

std::string_view Bv(beast::string_view s) { return {s.data(), s.size()}; }

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

// %XX decoding; with `plus`, '+' is a space (query strings and form bodies).
std::string Decode(std::string_view in, bool plus) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      int value = 0;
      if (absl::SimpleHexAtoi(Av(in.substr(i + 1, 2)), &value)) {
        out.push_back(static_cast<char>(value));
        i += 2;
        continue;
      }
    }
    out.push_back(plus && c == '+' ? ' ' : c);
  }
  return out;
}

void AddParams(std::string_view text, std::vector<std::pair<std::string, std::string>>* out) {
  for (absl::string_view pair : absl::StrSplit(Av(text), '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    out->emplace_back(Decode(Sv(pair.substr(0, eq)), true),
                      eq == absl::string_view::npos ? "" : Decode(Sv(pair.substr(eq + 1)), true));
  }
}

// The value of `name` among the `; name=value` parameters of a header value, unquoted.
std::string_view HeaderParam(std::string_view value, std::string_view name) {
  for (absl::string_view part : absl::StrSplit(Av(value), ';')) {
    part = absl::StripAsciiWhitespace(part);
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part.substr(0, eq)), Av(name))) {
      continue;
    }
    absl::string_view v = absl::StripAsciiWhitespace(part.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return {v.data(), v.size()};
  }
  return {};
}

// Splits a multipart/form-data body into its parts (views into `body`). False when malformed.
bool ParseMultipart(std::string_view body, std::string_view boundary,
                    std::vector<Request::FilePart>* parts) {
  if (boundary.empty() || boundary.size() > 200) return false;
  const std::string delimiter = absl::StrCat("--", Av(boundary));
  size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos) return false;
  for (;;) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") return true;  // The closing delimiter.
    if (body.substr(pos, 2) != "\r\n") return false;
    pos += 2;
    const size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return false;
    Request::FilePart part;
    for (absl::string_view line :
         absl::StrSplit(Av(body.substr(pos, headers_end - pos)), "\r\n", absl::SkipEmpty())) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) return false;
      const absl::string_view name = line.substr(0, colon);
      const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
      const std::string_view v(value.data(), value.size());
      if (absl::EqualsIgnoreCase(name, "Content-Disposition")) {
        part.name = HeaderParam(v, "name");
        part.filename = HeaderParam(v, "filename");
      } else if (absl::EqualsIgnoreCase(name, "Content-Type")) {
        part.content_type = v;
      }
    }
    const size_t content = headers_end + 4;
    const size_t next = body.find(absl::StrCat("\r\n", delimiter), content);
    if (next == std::string_view::npos) return false;
    part.content = body.substr(content, next - content);
    parts->push_back(part);
    pos = next + 2;
  }
}

void LogException(const std::string& name, std::string_view path, std::string_view what) {
  Log(LogLevel::kError, name, "handler failed",
      {{"path", path.substr(0, 128)}, {"exception", what}});
}

bool SafeHeaderText(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos;
}

// The bytes of an answer. `head`: HEAD request, the body is not sent.
std::string Serialize(const Response& res, bool keep_alive, bool head) {
  std::string out =
      absl::StrCat("HTTP/1.1 ", res.status, " ",
                   Av(Bv(bhttp::obsolete_reason(bhttp::int_to_status(res.status)))), "\r\n");
  for (const auto& [name, value] : res.headers) {
    if (!SafeHeaderText(name) || !SafeHeaderText(value) || name.empty()) continue;
    if (absl::EqualsIgnoreCase(name, "Content-Length") ||
        absl::EqualsIgnoreCase(name, "Connection") ||
        (!res.content_type.empty() && absl::EqualsIgnoreCase(name, "Content-Type"))) {
      continue;
    }
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  if (!res.content_type.empty() && SafeHeaderText(res.content_type)) {
    absl::StrAppend(&out, "Content-Type: ", res.content_type, "\r\n");
  }
  absl::StrAppend(&out, "Content-Length: ", res.body.size(), "\r\n",
                  keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n", "\r\n");
  if (!head) out.append(res.body);
  return out;
}

// Runs the handlers: a fixed set of threads and a queue. The queue is bounded by the connections
// (each has at most one request in it).
class WorkerPool {
 public:
  explicit WorkerPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() { Stop(); }

  void Submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then ends the threads. Idempotent.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stopped_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // Stopped and drained.
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      job = nullptr;  // Its captures go before the lock is taken again.
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

struct CompiledRoute {
  std::string method;
  std::regex pattern;
  // The pattern itself when it has no regular-expression characters: compared, not matched.
  std::string literal;
  Handler handler;
  QuickHandler quick;  // Only with a literal.
};

// A pattern that matches only itself.
bool IsLiteral(std::string_view pattern) {
  return !pattern.empty() && pattern.find_first_of("\\^$.|?*+()[]{}") == std::string_view::npos;
}

// What every connection of one server shares; sessions keep it alive.
struct Shared {
  ServerOptions options;
  std::vector<CompiledRoute> routes;
  bool has_quick = false;      // Some route has a quick handler.
  WorkerPool* pool = nullptr;  // Owned by the server; outlives every session's request.
  std::optional<asio::ssl::context> tls;

  std::mutex mu;
  int connections = 0;
  std::map<std::string, int, std::less<>> per_address;
  int in_flight = 0;  // Requests handed to the pool whose answer is not written yet.
  std::condition_variable in_flight_done;
  std::atomic<bool> stopping{false};

  // A new connection from `address`. 0: served, it holds a slot of max_connections and one of
  // its address's. 429: over max_connections_per_address, refused; it holds a slot of
  // max_connections until it is closed (a second). 503: over max_connections, nothing held.
  int Admit(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu);
    if (connections >= options.limits.max_connections) return 503;
    ++connections;
    auto it = per_address.find(address);
    const int mine = it == per_address.end() ? 0 : it->second;
    if (options.limits.max_connections_per_address > 0 &&
        mine >= options.limits.max_connections_per_address) {
      return 429;
    }
    ++per_address[address];
    return 0;
  }
  void Release(const std::string& address, bool served) {
    std::lock_guard<std::mutex> lock(mu);
    --connections;
    if (!served) return;
    auto it = per_address.find(address);
    if (it != per_address.end() && --it->second <= 0) per_address.erase(it);
  }
  void EndRequest() {
    std::lock_guard<std::mutex> lock(mu);
    if (--in_flight == 0) in_flight_done.notify_all();
  }
};

// The plain-text body of a refusal the server makes itself, unless on_error wrote one.
void FillError(const Shared& shared, const Request& request, Response& res) {
  if (shared.options.on_error && res.body.empty()) {
    try {
      shared.options.on_error(request, res);
    } catch (const std::exception& e) {
      LogException(shared.options.name, request.path, e.what());
    }
  }
  if (!res.body.empty()) return;
  std::string text;
  switch (res.status) {
    case 400:
      text = "Malformed HTTP request.";
      break;
    case 413:
      text = absl::StrCat("Request body larger than ", shared.options.max_body_bytes, " bytes.");
      break;
    case 431:
      text = absl::StrCat("Request header fields larger than ",
                          shared.options.limits.max_header_bytes, " bytes in all.");
      break;
    case 429:
      text = absl::StrCat("Too many connections from your address (at most ",
                          shared.options.limits.max_connections_per_address, " at once).");
      break;
    case 503:
      text = "Too many connections; try again later.";
      break;
    default:
      return;
  }
  res.SetContent(text + "\n", "text/plain; charset=utf-8");
}

// One accepted connection. Exactly one asynchronous operation (or the request in the pool) is
// outstanding at a time, so the session's state needs no lock; its handlers run on the I/O thread.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  // `refusal`: 0 to serve, else (429) answer that at once and close.
  Session(std::shared_ptr<Shared> shared, Stream stream, std::string address, int refusal)
      : shared_(std::move(shared)),
        stream_(std::move(stream)),
        address_(std::move(address)),
        refusal_(refusal) {}
  ~Session() {
    shared_->Release(address_, refusal_ == 0);
    if (dispatched_) shared_->EndRequest();
  }

  void Start() {
    if (refusal_ != 0) {
      // Plain HTTP: the answer goes out before any request is read. TLS: closed (an answer would
      // cost a handshake).
      if constexpr (kTls) {
        return Close();
      } else {
        return Refuse(refusal_);
      }
    }
    Lowest().expires_after(ToChrono(shared_->options.read_timeout));
    if constexpr (kTls) {
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](const ErrorCode& ec) {
                                if (ec) return self->Close();
                                self->Read();
                              });
    } else {
      Read();
    }
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, TcpStream>;
  static std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
    return absl::ToChronoMicroseconds(std::max(d, absl::Milliseconds(1)));
  }
  TcpStream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Read() {
    const ServerOptions& o = shared_->options;
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(std::min<size_t>(o.limits.max_header_bytes, 1 << 30)));
    parser_->body_limit(o.max_body_bytes);
    // A new connection has read_timeout for its first request's headers; a kept-alive one
    // idle_timeout for the next.
    Lowest().expires_after(ToChrono(served_ == 0 ? o.read_timeout : o.limits.idle_timeout));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](const ErrorCode& ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(const ErrorCode& ec) {
    if (ec) return OnReadError(ec);
    if (!parser_->is_done()) {
      Lowest().expires_after(ToChrono(shared_->options.read_timeout));
      if (absl::EqualsIgnoreCase(Av(Bv(parser_->get()[bhttp::field::expect])), "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                          [self = this->shared_from_this()](const ErrorCode& ec, size_t) {
                            if (ec) return self->Close();
                            self->ReadBody();
                          });
        return;
      }
      // Usually the body came with the header: parse what is buffered at once, without another
      // trip through the event loop.
      if (buffer_.size() > 0) {
        ErrorCode put_error;
        parser_->eager(true);
        buffer_.consume(parser_->put(buffer_.data(), put_error));
        if (put_error && put_error != bhttp::error::need_more) return OnReadError(put_error);
        if (parser_->is_done()) return Dispatch();
      }
      return ReadBody();
    }
    Dispatch();
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = this->shared_from_this()](const ErrorCode& ec, size_t) {
                        if (ec) return self->OnReadError(ec);
                        self->Dispatch();
                      });
  }

  void OnReadError(const ErrorCode& ec) {
    if (ec == bhttp::error::header_limit) return Refuse(431);
    if (ec == bhttp::error::body_limit) return Refuse(413);
    // A parse error on bytes that came: 400. The peer closing, a deadline or a reset: close.
    if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
        ec != bhttp::error::need_more) {
      return Refuse(400);
    }
    Close();
  }

  // Answers `status` to a request that is not served (its body may be unread), then closes.
  void Refuse(int status) {
    Request request;
    if (parser_.has_value() && !parser_->get().target().empty()) {
      method_ = std::string(Bv(parser_->get().method_string()));
      path_ = std::string(Bv(parser_->get().target()));
      path_ = Decode(path_.substr(0, path_.find('?')), false);
      request.method = method_;
      request.path = path_;
    }
    request.remote_address = address_;
    Response res{.status = status};
    FillError(*shared_, request, res);
    if (shared_->options.request_ids) {
      // The client's id when its header was read (a 413 is refused after the header).
      std::string_view given;
      // (Beast refuses a Content-Length over the limit before it marks the header done, with
      // the fields already stored.)
      if (parser_.has_value()) given = Bv(parser_->get()[request_id::kHttpHeader]);
      res.SetHeader(request_id::kHttpHeader, request_id::AcceptOrGenerate(given));
    }
    out_ = Serialize(res, /*keep_alive=*/false, /*head=*/false);
    Write(/*keep_alive=*/false);
  }

  void Dispatch() {
    if (shared_->stopping.load()) return Close();
    if (Quick()) return;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      ++shared_->in_flight;
    }
    dispatched_ = true;
    ++served_;
    keep_alive_ = parser_->get().keep_alive() &&
                  served_ < std::max(1, shared_->options.keep_alive_max_requests);
    // Nothing is read from the connection until the answer is written.
    Lowest().expires_never();
    shared_->pool->Submit([self = this->shared_from_this()] { self->Handle(); });
  }

  // The route's quick handler on this (I/O) thread, if it has one and answers; then the answer
  // is written from here. False: the request goes to the workers.
  bool Quick() {
    if (!shared_->has_quick) return false;
    const auto& msg = parser_->get();
    const std::string_view method = Bv(msg.method_string());
    const std::string_view target = Bv(msg.target());
    const CompiledRoute* route = nullptr;
    for (const CompiledRoute& r : shared_->routes) {
      // A literal path is its own decoding (no '%'), without a query.
      if (r.quick && r.method == method && r.literal == target) {
        route = &r;
        break;
      }
    }
    if (route == nullptr) return false;
    const ServerOptions& o = shared_->options;
    Request request;
    request.method = method;
    request.path = target;
    request.body = msg.body();
    request.remote_address = address_;
    request.matches.push_back(target);
    for (const auto& field : msg) {
      request.headers.emplace_back(Bv(field.name_string()), Bv(field.value()));
    }
    std::optional<request_id::ScopedRequestId> scope;
    std::string id;
    if (o.request_ids) {
      id = request_id::AcceptOrGenerate(request.Header(request_id::kHttpHeader));
      scope.emplace(id);
    }
    Response res;
    try {
      if (!route->quick(request, res)) return false;
    } catch (const std::exception& e) {
      LogException(o.name, request.path, e.what());
      return false;  // The handler on a worker answers (or fails) as usual.
    }
    if (o.request_ids && !res.HasHeader(request_id::kHttpHeader)) {
      res.SetHeader(request_id::kHttpHeader, id);
    }
    ++served_;
    const bool keep_alive = msg.keep_alive() && served_ < std::max(1, o.keep_alive_max_requests);
    out_ = Serialize(res, keep_alive, /*head=*/false);
    Lowest().expires_never();
    if constexpr (!kTls) {
      // As a worker does: the whole answer at once when the socket takes it.
      ErrorCode ec;
      const size_t n = Lowest().socket().write_some(asio::buffer(out_), ec);
      if (!ec && n == out_.size()) {
        Written(ErrorCode(), keep_alive);
        return true;
      }
      if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        Close();
        return true;
      }
      out_.erase(0, n);
    }
    Write(keep_alive);
    return true;
  }

  // On a worker thread.
  void Handle() {
    const ServerOptions& o = shared_->options;
    auto& msg = parser_->get();
    method_ = std::string(Bv(msg.method_string()));
    const std::string_view target = Bv(msg.target());
    const size_t question = target.find('?');
    path_ = Decode(target.substr(0, question), false);
    params_.clear();
    if (question != std::string_view::npos) AddParams(target.substr(question + 1), &params_);

    Request request;
    request.method = method_;
    request.path = path_;
    request.body = msg.body();
    request.remote_address = address_;
    for (const auto& field : msg) {
      request.headers.emplace_back(Bv(field.name_string()), Bv(field.value()));
    }
    const std::string content_type = absl::AsciiStrToLower(Av(request.Header("Content-Type")));
    bool malformed = false;
    if (absl::StartsWith(content_type, "application/x-www-form-urlencoded")) {
      AddParams(request.body, &params_);
    } else if (absl::StartsWith(content_type, "multipart/form-data")) {
      malformed = !ParseMultipart(
          request.body, HeaderParam(request.Header("Content-Type"), "boundary"), &request.files);
    }
    for (const auto& [name, value] : params_) request.params.emplace_back(name, value);

    std::optional<request_id::ScopedRequestId> scope;
    std::string id;
    if (o.request_ids) {
      id = request_id::AcceptOrGenerate(request.Header(request_id::kHttpHeader));
      scope.emplace(id);
    }
    const bool head = method_ == "HEAD";
    Response res;
    const CompiledRoute* route = nullptr;
    std::smatch groups;
    if (malformed) {
      res.status = 400;
    } else {
      const std::string_view routed_method = head ? "GET" : std::string_view(method_);
      for (const CompiledRoute& r : shared_->routes) {
        if (r.method != routed_method) continue;
        if (!r.literal.empty() ? path_ == r.literal : std::regex_match(path_, groups, r.pattern)) {
          route = &r;
          break;
        }
      }
      if (route == nullptr) res.status = 404;
    }
    if (route != nullptr) {
      for (size_t i = 0; i < groups.size(); ++i) {
        if (!groups[i].matched) {
          request.matches.emplace_back();
          continue;
        }
        request.matches.push_back(std::string_view(path_).substr(
            static_cast<size_t>(groups.position(i)), static_cast<size_t>(groups.length(i))));
      }
      if (!route->literal.empty()) request.matches.push_back(path_);  // Compared, not matched.
      try {
        route->handler(request, res);
      } catch (const std::exception& e) {
        LogException(o.name, request.path, e.what());
        res = Response{.status = 500};
      } catch (...) {
        LogException(o.name, request.path, "unknown exception");
        res = Response{.status = 500};
      }
    }
    if (res.status >= 400 && res.body.empty()) {
      if (route == nullptr) {
        FillError(*shared_, request, res);
      } else if (o.on_error) {
        try {
          o.on_error(request, res);
        } catch (const std::exception& e) {
          LogException(o.name, request.path, e.what());
        }
      }
    }
    if (o.request_ids && !res.HasHeader(request_id::kHttpHeader)) {
      res.SetHeader(request_id::kHttpHeader, id);
    }
    scope.reset();
    out_ = Serialize(res, keep_alive_ && !malformed, head);
    const bool keep_alive = keep_alive_ && !malformed;
    if constexpr (!kTls) {
      // Plain TCP: the worker writes the answer itself when the socket takes all of it at once
      // (an answer smaller than the socket buffer: the usual case) and starts the next read,
      // which saves the I/O thread a wake-up per request. The socket is non-blocking: nothing
      // here waits for the client; what does not fit goes to the I/O thread as before.
      ErrorCode ec;
      const size_t n = Lowest().socket().write_some(asio::buffer(out_), ec);
      if (!ec && n == out_.size()) {
        // The last use of this session on this thread: the read may complete on the I/O
        // thread at once.
        return Written(ErrorCode(), keep_alive);
      }
      if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        return asio::post(stream_.get_executor(),
                          [self = this->shared_from_this()] { self->Close(); });
      }
      out_.erase(0, n);
    }
    asio::post(stream_.get_executor(),
               [self = this->shared_from_this(), keep_alive] { self->Write(keep_alive); });
  }

  void Write(bool keep_alive) {
    Lowest().expires_after(ToChrono(shared_->options.write_timeout));
    asio::async_write(stream_, asio::buffer(out_),
                      [self = this->shared_from_this(), keep_alive](const ErrorCode& ec, size_t) {
                        self->Written(ec, keep_alive);
                      });
  }

  void Written(const ErrorCode& ec, bool keep_alive) {
    if (dispatched_) {
      dispatched_ = false;
      shared_->EndRequest();
    }
    out_.clear();
    if (ec) return Close();
    if (!keep_alive || shared_->stopping.load()) return Linger();
    Read();
  }

  // After the last answer: no more writes, read what the client still sends (for at most a
  // second) so that closing does not reset the connection under the answer, then close.
  void Linger() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(1));
      stream_.async_shutdown(
          [self = this->shared_from_this()](const ErrorCode&) { self->Close(); });
    } else {
      ErrorCode ignored;
      Lowest().socket().shutdown(Socket::shutdown_send, ignored);
      Lowest().expires_after(std::chrono::seconds(1));
      Drain();
    }
  }
  void Drain() {
    Lowest().async_read_some(asio::buffer(scratch_),
                             [self = this->shared_from_this()](const ErrorCode& ec, size_t) {
                               if (ec) return self->Close();
                               self->Drain();
                             });
  }

  void Close() {
    ErrorCode ignored;
    Lowest().socket().shutdown(Socket::shutdown_both, ignored);
    Lowest().close();
  }

  const std::shared_ptr<Shared> shared_;
  Stream stream_;
  const std::string address_;
  const int refusal_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string method_;
  std::string path_;
  std::vector<std::pair<std::string, std::string>> params_;
  std::string out_;
  int served_ = 0;
  bool keep_alive_ = false;
  bool dispatched_ = false;
  std::array<char, 4096> scratch_;
};

class AsioServer final : public Server {
 public:
  AsioServer(std::shared_ptr<Shared> shared, std::string scheme, std::string host)
      : shared_(std::move(shared)),
        pool_(std::max(1, shared_->options.threads)),
        scheme_(std::move(scheme)),
        host_(std::move(host)),
        acceptor_(io_) {
    shared_->pool = &pool_;
  }
  ~AsioServer() override { Stop(); }

  absl::Status Listen(int port) {
    ErrorCode ec;
    tcp::resolver resolver(io_);
    auto endpoints = resolver.resolve(host_, std::to_string(port), tcp::resolver::passive, ec);
    if (!ec && endpoints.empty()) ec = asio::error::host_not_found;
    if (!ec) {
      const tcp::endpoint endpoint = endpoints.begin()->endpoint();
      // SO_REUSEADDR only allows a restart over TIME_WAIT; no SO_REUSEPORT, so a second process
      // cannot bind the same port and take half the connections.
      if (!acceptor_.open(endpoint.protocol(), ec) &&
          !acceptor_.set_option(asio::socket_base::reuse_address(true), ec) &&
          !acceptor_.bind(endpoint, ec)) {
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      }
    }
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "HTTP: cannot listen on ", host_, ":", port,
          " (address in use by another process, e.g. a qsignd already running, or not local: ",
          ec.message(), ")"));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    // One event-loop thread: two did not pay (docs/PERFORMANCE.md), and one needs no strands.
    io_thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string base_url() const override {
    return absl::StrCat(scheme_, "://", host_.find(':') != std::string::npos ? "[" : "", host_,
                        host_.find(':') != std::string::npos ? "]" : "", ":", port_);
  }

  void Stop() override {
    std::call_once(stopped_, [this] {
      shared_->stopping.store(true);
      asio::post(acceptor_.get_executor(), [this] {
        ErrorCode ignored;
        acceptor_.close(ignored);
      });
      // The requests in the pool are handled and their answers written (at most a few seconds).
      pool_.Stop();
      {
        std::unique_lock<std::mutex> lock(shared_->mu);
        shared_->in_flight_done.wait_for(lock, std::chrono::seconds(5),
                                         [this] { return shared_->in_flight <= 0; });
      }
      io_.stop();
      if (io_thread_.joinable()) io_thread_.join();
    });
  }

 private:
  void Accept() {
    acceptor_.async_accept(io_.get_executor(), [this](const ErrorCode& ec, Socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) Serve(std::move(socket));
      // Then everything else already waiting (a burst of new clients), without a trip through
      // the event loop each: their first requests are already in their sockets.
      ErrorCode more;
      acceptor_.non_blocking(true, more);
      for (int i = 0; i < 256 && !more; ++i) {
        Socket next(io_.get_executor());
        acceptor_.accept(next, more);
        if (!more) Serve(std::move(next));
      }
      Accept();
    });
  }

  void Serve(Socket socket) {
    ErrorCode ec;
    const tcp::endpoint peer = socket.remote_endpoint(ec);
    if (ec) return;
    socket.set_option(tcp::no_delay(true), ec);
    // Synchronous writes (a worker's, in Session::Handle) return would_block instead of waiting.
    socket.non_blocking(true, ec);
    std::string address =
        peer.address().is_v6() && peer.address().to_v6().is_v4_mapped()
            ? asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()).to_string()
            : peer.address().to_string();
    const int refusal = shared_->Admit(address);
    // Over max_connections: closed at once (answering costs what the limit saves). Over the
    // per-address limit: a 429 to its first request, then closed (not counted as a connection).
    if (refusal == 503) return;
    if (shared_->tls.has_value()) {
      std::make_shared<Session<beast::ssl_stream<TcpStream>>>(
          shared_, beast::ssl_stream<TcpStream>(std::move(socket), *shared_->tls),
          std::move(address), refusal)
          ->Start();
    } else {
      std::make_shared<Session<TcpStream>>(shared_, TcpStream(std::move(socket)),
                                           std::move(address), refusal)
          ->Start();
    }
  }

  // Declared first, destroyed last: sessions (owned by pending operations of io_) use it.
  const std::shared_ptr<Shared> shared_;
  WorkerPool pool_;
  const std::string scheme_;
  const std::string host_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread io_thread_;
  int port_ = 0;
  std::once_flag stopped_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options,
                                                    std::vector<Route> routes) {
  auto shared = std::make_shared<Shared>();
  shared->options = options;
  if (shared->options.threads <= 0) shared->options.threads = 8;
  if (shared->options.limits.max_connections <= 0) shared->options.limits.max_connections = 1;
  for (Route& route : routes) {
    static const char* const kMethods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
    if (std::find_if(std::begin(kMethods), std::end(kMethods),
                     [&](const char* m) { return route.method == m; }) == std::end(kMethods)) {
      return absl::InvalidArgumentError(
          absl::StrCat("HTTP route ", route.pattern, ": unknown method ", route.method));
    }
    const bool literal = IsLiteral(route.pattern);
    if (route.quick && !literal) {
      return absl::InvalidArgumentError(absl::StrCat(
          "HTTP route ", route.pattern, ": a quick handler needs a literal path pattern"));
    }
    shared->has_quick = shared->has_quick || route.quick != nullptr;
    try {
      shared->routes.push_back({.method = route.method,
                                .pattern = std::regex(route.pattern, std::regex::ECMAScript),
                                .literal = literal ? route.pattern : "",
                                .handler = std::move(route.handler),
                                .quick = std::move(route.quick)});
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("HTTP route ", route.pattern, ": not a regular expression: ", e.what()));
    }
  }
  if (options.tls) {
    shared->tls.emplace(asio::ssl::context::tls_server);
    if (absl::Status s = ConfigureTls(shared->tls->native_handle(), options.tls_files); !s.ok()) {
      return s;
    }
  }
  auto server = std::make_unique<AsioServer>(shared, options.tls ? "https" : "http", options.host);
  if (absl::Status s = server->Listen(options.port); !s.ok()) return s;
  return server;
}

}  // namespace qsign::http
