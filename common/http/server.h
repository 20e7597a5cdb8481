// The one HTTP server of qsign: /metrics, lifecycle's OCSP/CRL and the CSC gateway all listen
// through it. Callers see only the types below (requests, responses, routes, options and the
// Server interface); the engine behind StartServer (Boost.Asio's epoll loop with Beast's HTTP/1.1
// parser and a bounded worker pool, docs/decisions/http-server.md) is private to common/http.
#ifndef QSIGN_COMMON_HTTP_SERVER_H_
#define QSIGN_COMMON_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::http {

// One request as a handler sees it. The views are valid until the handler returns.
struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view path;    // Decoded, without the query.
  std::string_view body;
  std::string remote_address;
  // [0] the whole path, then the groups of the route's pattern.
  std::vector<std::string_view> matches;
  // Every header as received; names compare case-insensitively in Header and HeaderCount.
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  // Decoded parameters of the query string and of an application/x-www-form-urlencoded body, in
  // that order (names compare exactly).
  std::vector<std::pair<std::string_view, std::string_view>> params;
  // The parts of a multipart/form-data body.
  struct FilePart {
    std::string_view name;          // The form field.
    std::string_view filename;      // As the client sent it; may be empty.
    std::string_view content_type;  // As the client sent it; may be empty.
    std::string_view content;
  };
  std::vector<FilePart> files;

  // The first value of header `name`; empty when absent.
  std::string_view Header(std::string_view name) const;
  size_t HeaderCount(std::string_view name) const;
  // The first value of parameter `name`; empty when absent.
  std::string_view Param(std::string_view name) const;
  // The part of form field `name`; nullptr when absent.
  const FilePart* File(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;

  void SetContent(std::string content, std::string type) {
    body = std::move(content);
    content_type = std::move(type);
  }
  // Replaces an earlier value of the same header.
  void SetHeader(std::string_view name, std::string_view value);
  bool HasHeader(std::string_view name) const;
};

using Handler = std::function<void(const Request&, Response&)>;

// Answers on the I/O thread when it can do so at once; false hands the request to the route's
// handler on a worker.
using QuickHandler = std::function<bool(const Request&, Response&)>;

struct Route {
  std::string method;   // GET, POST, PUT, DELETE or PATCH.
  std::string pattern;  // ECMAScript regular expression matched against the whole path.
  Handler handler;
  // Optional, for a pattern without regular-expression characters (a literal path): tried first,
  // on the I/O thread, before any worker is involved (e.g. an answer from a cache). It must never
  // wait (no HSM, no database, no lock held by a waiting thread): every connection of the
  // listener waits while it runs. The request it sees has no params, files or matches.
  QuickHandler quick;
};

// HTTPS: PEM files; the *_field names are what errors call them (config field paths).
struct TlsFiles {
  std::string cert_file;  // PEM chain, leaf first.
  std::string key_file;   // PEM private key, unencrypted.
  // PEM CA(s) a client certificate must chain to; empty: no client certificate asked for.
  std::string client_ca_file;
  std::string cert_field = "tls.cert_file";
  std::string key_field = "tls.key_file";
  std::string client_ca_field = "tls.client_ca_file";
};

// What one listener lets its clients hold (ServerConfig.http, config.proto HttpLimits).
struct ConnectionLimits {
  // Open connections at once; a connection beyond is closed at once.
  int max_connections = 4096;
  // Open connections from one client address at once (0: no limit); a connection beyond gets a
  // 429 with a plain-text body and is closed. Behind a proxy every client has the proxy's
  // address: raise it or set 0 there.
  int max_connections_per_address = 256;
  // Larger request lines + header fields (all of them) are refused with 431.
  size_t max_header_bytes = 16 * 1024;
  // A kept-alive connection without its next request this long after the last answer is closed.
  absl::Duration idle_timeout = absl::Seconds(5);
};

struct ServerOptions {
  // Log component of the server's own lines ("metrics", "gateway-http", ...).
  std::string name = "http";
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (tests).
  // Plain HTTP when absent (insecure_dev, or TLS terminated in front).
  bool tls = false;
  TlsFiles tls_files;
  // Handlers run on a fixed pool of `threads` worker threads; no thread is tied to an open
  // connection (I/O runs on one event-loop thread). A handler that waits (an HSM
  // signature, a gRPC call) holds one worker while it runs; requests beyond the workers queue.
  int threads = 8;
  ConnectionLimits limits;
  // Larger request bodies are refused with 413 (from Content-Length, before they are read).
  size_t max_body_bytes = 64 * 1024;
  // A new connection's first request header, and any request body, must arrive within
  // read_timeout (else the connection is closed: slow clients); see also limits.idle_timeout.
  absl::Duration read_timeout = absl::Seconds(5);
  absl::Duration write_timeout = absl::Seconds(5);
  // Kept for callers; every connection is TCP_NODELAY (an answer is written in one piece).
  bool tcp_nodelay = false;
  // Requests served on one kept-alive connection before it is closed.
  int keep_alive_max_requests = 10000;
  // Every request gets an id (X-Request-Id when well-formed, else a fresh one): set for the
  // handler's log lines and outgoing gRPC calls (common/request_id.h), echoed in the response.
  bool request_ids = false;
  // Called for every answer with status >= 400 and an empty body, whether a handler or the
  // server made it (no route: 404, body over max_body_bytes: 413, header over
  // limits.max_header_bytes: 431, too many connections from the address: 429, malformed HTTP: 400,
  // a handler that threw: 500), to write the error body. The server's own 400/413/431/429 that
  // on_error leaves empty get a one-line plain-text body; other statuses without a body go out
  // bodiless.
  Handler on_error;
};

// "host:port" (IPv6 as "[::1]:port"), port 0..65535: the form of every listen address in the
// config. INVALID_ARGUMENT "expected host:port ..." otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(std::string_view address);

// A listening server. Destroying it stops it (Stop).
class Server {
 public:
  virtual ~Server() = default;
  // The bound port (the free one picked for port 0).
  virtual int port() const = 0;
  // "http(s)://<host>:<port>".
  virtual std::string base_url() const = 0;
  // Stops accepting, finishes the requests in flight and returns. Idempotent.
  virtual void Stop() = 0;
};

// Binds host:port, then serves `routes` on its own threads until Stop. Errors: UNAVAILABLE when
// the address cannot be bound; INVALID_ARGUMENT for TLS files that do not load (naming the
// TlsFiles field) or an unknown route method.
absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options,
                                                    std::vector<Route> routes);

}  // namespace qsign::http

#endif  // QSIGN_COMMON_HTTP_SERVER_H_
