#include "common/http/server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file.h"
#include "common/http/html.h"
#include "common/request_id.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign::http {
namespace {

// A file curl wrote; empty when it is missing (the assertion on it then says what differs).
std::string Read(const std::string& path) { return ReadFileToString(path).value_or(""); }

std::unique_ptr<Server> StartOrDie(ServerOptions options, std::vector<Route> routes) {
  auto server = StartServer(options, std::move(routes));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpServerTest, RoutesSeeTheirGroupsHeadersAndBody) {
  auto server = StartOrDie(
      {}, {{.method = "POST",
            .pattern = R"(/echo/([a-z]+))",
            .handler =
                [](const Request& req, Response& res) {
                  res.SetHeader("X-Name", req.matches[1]);
                  res.SetHeader("X-Tags", absl::StrCat(req.HeaderCount("x-tag")));
                  res.SetContent(
                      absl::StrCat(Av(req.method), " ", Av(req.Header("X-TAG")), " ", Av(req.body)),
                      "text/plain");
                }},
           {.method = "GET", .pattern = "/empty", .handler = [](const Request&, Response& res) {
              res.status = 503;
            }}});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->base_url(), absl::StrCat("http://127.0.0.1:", server->port()));
  httplib::Client client("127.0.0.1", server->port());
  auto r = client.Post("/echo/abc", {{"X-Tag", "one"}, {"X-Tag", "two"}}, "hello", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Name"), "abc");
  EXPECT_EQ(r->get_header_value("X-Tags"), "2");
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain");
  EXPECT_EQ(r->body.substr(0, 5), "POST ");
  EXPECT_EQ(r->body.substr(r->body.size() - 5), "hello");
  // A handler's own error status goes out bodiless when there is no on_error.
  auto empty = client.Get("/empty");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 503);
  EXPECT_EQ(empty->body, "");
  auto missing = client.Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(HttpServerTest, OnErrorWritesTheServersOwnRefusals) {
  auto server = StartOrDie(
      {.max_body_bytes = 16,
       .on_error =
           [](const Request& req, Response& res) {
             res.SetContent(absl::StrCat("error ", res.status, " at ", Av(req.path)), "text/plain");
           }},
      {{.method = "POST",
        .pattern = "/ok",
        .handler = [](const Request&, Response& res) { res.SetContent("ok", "text/plain"); }},
       {.method = "GET", .pattern = "/throws", .handler = [](const Request&, Response&) {
          throw std::runtime_error("boom");
        }}});
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  auto missing = client.Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "error 404 at /nowhere");
  auto large = client.Post("/ok", std::string(17, 'x'), "text/plain");
  ASSERT_TRUE(large);
  EXPECT_EQ(large->status, 413);
  EXPECT_EQ(large->body.substr(0, 9), "error 413");
  auto small = client.Post("/ok", std::string(16, 'x'), "text/plain");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
  auto throws = client.Get("/throws");
  ASSERT_TRUE(throws);
  EXPECT_EQ(throws->status, 500);
  EXPECT_EQ(throws->body, "error 500 at /throws");
}

TEST(HttpServerTest, RequestIdsAreSetForTheHandlerAndEchoed) {
  auto server =
      StartOrDie({.request_ids = true},
                 {{.method = "GET", .pattern = "/id", .handler = [](const Request&, Response& res) {
                     res.SetContent(std::string(request_id::Current()), "text/plain");
                   }}});
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  const std::string mine = request_id::Generate();
  auto r = client.Get("/id", {{request_id::kHttpHeader, mine}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, mine);
  EXPECT_EQ(r->get_header_value(request_id::kHttpHeader), mine);
  // A malformed one is replaced; unrouted answers carry an id too.
  auto fresh = client.Get("/id", {{request_id::kHttpHeader, "bad id"}});
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(request_id::IsWellFormed(fresh->body));
  EXPECT_EQ(fresh->get_header_value(request_id::kHttpHeader), fresh->body);
  auto missing = client.Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(request_id::IsWellFormed(missing->get_header_value(request_id::kHttpHeader)));
}

TEST(HttpServerTest, StartAndStopErrors) {
  auto first = StartOrDie({}, {});
  ASSERT_NE(first, nullptr);
  // An address that is not this machine's cannot be bound.
  auto elsewhere = StartServer({.host = "192.0.2.1", .port = 8080}, {});
  EXPECT_EQ(elsewhere.status().code(), absl::StatusCode::kUnavailable);
  auto method = StartServer({}, {{.method = "BREW", .pattern = "/", .handler = nullptr}});
  EXPECT_EQ(method.status().code(), absl::StatusCode::kInvalidArgument);
  auto tls = StartServer(
      {.tls = true,
       .tls_files = {.cert_file = "/nonexistent/cert.pem", .cert_field = "x.cert_file"}},
      {});
  EXPECT_EQ(tls.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tls.status().message().substr(0, 12), "x.cert_file:");
  first->Stop();
  first->Stop();  // Idempotent; the destructor stops again.
}

// A raw TCP connection to 127.0.0.1:`port` from `source` (any 127.x.y.z is this machine): what
// a browser, a proxy or an attacker does, byte by byte.
class Conn {
 public:
  Conn(int port, const char* source = "127.0.0.1") {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source, &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
        connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
      ADD_FAILURE() << "cannot connect from " << source;
      Close();
    }
  }
  ~Conn() { Close(); }
  Conn(Conn&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  bool ok() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  bool Send(std::string_view data) {
    return fd_ >= 0 &&
           send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // What arrives within `wait`, up to the end of one answer with a Content-Length (or the close).
  std::string Receive(absl::Duration wait = absl::Seconds(5)) {
    std::string got;
    const absl::Time deadline = absl::Now() + wait;
    while (fd_ >= 0 && absl::Now() < deadline) {
      const timeval tv = absl::ToTimeval(std::max(deadline - absl::Now(), absl::Milliseconds(1)));
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::array<char, 16384> buf;
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) {
        closed_ = n == 0;
        break;
      }
      got.append(buf.data(), static_cast<size_t>(n));
      const size_t end = got.find("\r\n\r\n");
      const size_t length = got.find("Content-Length: ");
      if (end != std::string::npos && length != std::string::npos && length < end) {
        const size_t body = std::stoul(got.substr(length + 16));
        if (got.size() >= end + 4 + body) break;
      }
    }
    return got;
  }
  // True once the server has closed the connection (within `wait`).
  bool ClosedByServer(absl::Duration wait) {
    Receive(wait);
    return closed_;
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
};

Route Hello() {
  return {.method = "GET", .pattern = "/hello", .handler = [](const Request&, Response& res) {
            res.SetContent("hello", "text/plain");
          }};
}

constexpr std::string_view kGetHello = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(HttpServerTest, HeadersOverTheLimitGet431WithAPlainBody) {
  auto server = StartOrDie({.limits = {.max_header_bytes = 4096}}, {Hello()});
  ASSERT_NE(server, nullptr);
  Conn big(server->port());
  ASSERT_TRUE(big.Send(absl::StrCat(
      "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ", std::string(5000, 'a'), "\r\n\r\n")));
  const std::string answer = big.Receive();
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 431 ")) << answer.substr(0, 80);
  EXPECT_THAT(answer, ::testing::HasSubstr("Request header fields larger than 4096 bytes"));
  EXPECT_THAT(answer, ::testing::HasSubstr("Connection: close"));
  EXPECT_TRUE(big.ClosedByServer(absl::Seconds(3)));
  // Within the limit: served.
  Conn fine(server->port());
  ASSERT_TRUE(fine.Send(absl::StrCat(
      "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ", std::string(3000, 'a'), "\r\n\r\n")));
  EXPECT_TRUE(absl::StartsWith(fine.Receive(), "HTTP/1.1 200 "));
}

TEST(HttpServerTest, BodiesOverTheLimitGet413BeforeTheyAreSent) {
  auto server = StartOrDie(
      {.max_body_bytes = 1000},
      {{.method = "POST", .pattern = "/in", .handler = [](const Request& req, Response& res) {
          res.SetContent(absl::StrCat(req.body.size()), "text/plain");
        }}});
  ASSERT_NE(server, nullptr);
  // The header announces 1 MB; the answer comes without a byte of the body being sent.
  Conn big(server->port());
  ASSERT_TRUE(big.Send("POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"));
  const std::string answer = big.Receive();
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 413 ")) << answer.substr(0, 80);
  EXPECT_THAT(answer, ::testing::HasSubstr("Request body larger than 1000 bytes."));
  // Chunked bodies are counted as they come.
  Conn chunked(server->port());
  ASSERT_TRUE(chunked.Send(
      absl::StrCat("POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n",
                   std::string(2000, 'b'), "\r\n0\r\n\r\n")));
  EXPECT_TRUE(absl::StartsWith(chunked.Receive(), "HTTP/1.1 413 "));
  httplib::Client client("127.0.0.1", server->port());
  auto ok = client.Post("/in", std::string(1000, 'c'), "text/plain");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "1000");
}

TEST(HttpServerTest, ConnectionsPerAddressAreLimited) {
  auto server = StartOrDie({.limits = {.max_connections_per_address = 3}}, {Hello()});
  ASSERT_NE(server, nullptr);
  std::vector<Conn> mine;
  for (int i = 0; i < 3; ++i) mine.emplace_back(server->port(), "127.0.0.2");
  absl::SleepFor(absl::Milliseconds(100));  // Accepted.
  Conn fourth(server->port(), "127.0.0.2");
  ASSERT_TRUE(fourth.Send(kGetHello));
  const std::string refused = fourth.Receive();
  EXPECT_TRUE(absl::StartsWith(refused, "HTTP/1.1 429 ")) << refused.substr(0, 80);
  EXPECT_THAT(refused, ::testing::HasSubstr("Too many connections from your address (at most 3"));
  // Another address is not affected; the first three are served.
  Conn other(server->port(), "127.0.0.3");
  ASSERT_TRUE(other.Send(kGetHello));
  EXPECT_TRUE(absl::StartsWith(other.Receive(), "HTTP/1.1 200 "));
  ASSERT_TRUE(mine[0].Send(kGetHello));
  EXPECT_TRUE(absl::StartsWith(mine[0].Receive(), "HTTP/1.1 200 "));
  // A slot comes back when one closes.
  mine[1].Close();
  absl::SleepFor(absl::Milliseconds(100));
  Conn again(server->port(), "127.0.0.2");
  ASSERT_TRUE(again.Send(kGetHello));
  EXPECT_TRUE(absl::StartsWith(again.Receive(), "HTTP/1.1 200 "));
}

TEST(HttpServerTest, IdleAndSilentConnectionsAreClosed) {
  auto server = StartOrDie({.limits = {.idle_timeout = absl::Milliseconds(300)},
                            .read_timeout = absl::Milliseconds(300)},
                           {Hello()});
  ASSERT_NE(server, nullptr);
  // Kept alive after an answer, closed after idle_timeout without a next request.
  Conn kept(server->port());
  ASSERT_TRUE(kept.Send(kGetHello));
  const std::string answer = kept.Receive();
  EXPECT_THAT(answer, ::testing::HasSubstr("Connection: keep-alive"));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(kept.ClosedByServer(absl::Seconds(3)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // A connection that never sends a complete header (slow loris) is closed after read_timeout.
  Conn silent(server->port());
  ASSERT_TRUE(silent.Send("GET /hel"));
  EXPECT_TRUE(silent.ClosedByServer(absl::Seconds(3)));
}

// How many threads this process runs.
size_t ThreadCount() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

TEST(HttpServerTest, AThousandIdleKeepAliveConnectionsCostNoThreadAndDelayNoOne) {
  auto server = StartOrDie({.threads = 4, .limits = {.max_connections_per_address = 0}}, {Hello()});
  ASSERT_NE(server, nullptr);
  const size_t threads_before = ThreadCount();
  std::vector<Conn> idle;
  idle.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    idle.emplace_back(server->port(), "127.0.0.4");
    ASSERT_TRUE(idle.back().Send(kGetHello));
  }
  for (Conn& c : idle) ASSERT_TRUE(absl::StartsWith(c.Receive(), "HTTP/1.1 200 "));
  // 1,000 kept-alive connections open and idle: no thread each (cpp-httplib had one per
  // connection), and a normal client is answered at once, again and again.
  EXPECT_LT(ThreadCount(), threads_before + 10);
  std::vector<absl::Duration> took;
  for (int i = 0; i < 20; ++i) {
    const absl::Time start = absl::Now();
    Conn normal(server->port());
    ASSERT_TRUE(normal.Send(kGetHello));
    EXPECT_TRUE(absl::StartsWith(normal.Receive(), "HTTP/1.1 200 "));
    took.push_back(absl::Now() - start);
  }
  std::sort(took.begin(), took.end());
  EXPECT_LT(took[18], absl::Milliseconds(50));
}

TEST(HttpServerTest, ASlowBodyHoldsNoWorker) {
  // One worker: if a slow body held it, nobody else would be answered.
  auto server = StartOrDie(
      {.threads = 1},
      {Hello(),
       {.method = "POST", .pattern = "/in", .handler = [](const Request& req, Response& res) {
          res.SetContent(absl::StrCat(req.body.size()), "text/plain");
        }}});
  ASSERT_NE(server, nullptr);
  std::vector<Conn> slow;
  for (int i = 0; i < 20; ++i) {
    slow.emplace_back(server->port());
    ASSERT_TRUE(slow.back().Send("POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"));
  }
  absl::SleepFor(absl::Milliseconds(100));
  for (int i = 0; i < 10; ++i) {
    const absl::Time start = absl::Now();
    Conn normal(server->port());
    ASSERT_TRUE(normal.Send(kGetHello));
    EXPECT_TRUE(absl::StartsWith(normal.Receive(), "HTTP/1.1 200 "));
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  }
  // The slow ones finish their bodies and are answered.
  for (Conn& c : slow) ASSERT_TRUE(c.Send(std::string(98, 'z')));
  for (Conn& c : slow) EXPECT_THAT(c.Receive(), ::testing::HasSubstr("\r\n\r\n100"));
}

// A route's quick handler answers on the I/O thread: with the only worker busy (a handler that
// waits), a cached answer still goes out at once; what it declines goes to the workers.
TEST(HttpServerTest, QuickHandlersAnswerWhileEveryWorkerIsBusy) {
  std::atomic<bool> release{false};
  auto server = StartOrDie(
      {.threads = 1},
      {{.method = "GET",
        .pattern = "/wait",
        .handler =
            [&](const Request&, Response& res) {
              while (!release.load()) absl::SleepFor(absl::Milliseconds(5));
              res.SetContent("waited", "text/plain");
            }},
       {.method = "POST",
        .pattern = "/answer",
        .handler = [](const Request& req,
                      Response& res) { res.SetContent("worker " + std::string(req.body), "x/y"); },
        .quick =
            [](const Request& req, Response& res) {
              if (req.body != "cached") return false;
              res.SetContent(absl::StrCat("quick ", Av(req.path), " ", Av(req.Header("x-k"))),
                             "x/y");
              return true;
            }}});
  ASSERT_NE(server, nullptr);
  Conn waiting(server->port());
  ASSERT_TRUE(waiting.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"));
  absl::SleepFor(absl::Milliseconds(50));  // The worker is now held.
  Conn c(server->port());
  for (int i = 0; i < 3; ++i) {  // On one kept-alive connection.
    const absl::Time start = absl::Now();
    ASSERT_TRUE(
        c.Send("POST /answer HTTP/1.1\r\nHost: x\r\nX-K: v\r\nContent-Length: 6\r\n\r\ncached"));
    const std::string answer = c.Receive();
    EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200 ")) << answer;
    EXPECT_THAT(answer, ::testing::HasSubstr("\r\n\r\nquick /answer v"));
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  }
  // Declined: it waits for the worker like any request.
  ASSERT_TRUE(c.Send("POST /answer HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew"));
  release = true;
  EXPECT_THAT(c.Receive(), ::testing::HasSubstr("\r\n\r\nworker new"));
  EXPECT_THAT(waiting.Receive(), ::testing::HasSubstr("\r\n\r\nwaited"));
  // Only a literal path may have one.
  auto regex = StartServer({}, {{.method = "POST",
                                 .pattern = "/a/(.+)",
                                 .handler = [](const Request&, Response&) {},
                                 .quick = [](const Request&, Response&) { return false; }}});
  EXPECT_EQ(regex.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerTest, QueryFormAndMultipartParametersAndHead) {
  auto server = StartOrDie(
      {}, {{.method = "POST",
            .pattern = "/form",
            .handler =
                [](const Request& req, Response& res) {
                  const Request::FilePart* file = req.File("file");
                  res.SetContent(
                      absl::StrCat(Av(req.Param("q")), "|", Av(req.Param("a")), "|",
                                   file == nullptr
                                       ? "-"
                                       : absl::StrCat(Av(file->filename), ":", Av(file->content))),
                      "text/plain");
                }},
           Hello()});
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  Conn form(server->port());
  const std::string body = "a=%C3%A9t%C3%A9&b=2";
  ASSERT_TRUE(
      form.Send(absl::StrCat("POST /form?q=x%20y+z HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             "application/x-www-form-urlencoded\r\nContent-Length: ",
                             body.size(), "\r\n\r\n", body)));
  EXPECT_THAT(form.Receive(), ::testing::EndsWith("\r\n\r\nx y z|été|-"));
  httplib::MultipartFormDataItems items = {{"file", "PDF\r\n--bytes", "a.pdf", "application/pdf"},
                                           {"a", "v", "", ""}};
  auto multi = client.Post("/form", items);
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->body, "||a.pdf:PDF\r\n--bytes");
  auto head = client.Head("/hello");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Content-Length"), "5");
  EXPECT_EQ(head->body, "");
}

// curl, an independent client: two requests on one kept-alive connection, and a body sent
// after "Expect: 100-continue" without curl's one-second wait.
TEST(HttpServerTest, CurlReusesTheConnectionAndGetsContinue) {
  auto server = StartOrDie(
      {}, {Hello(),
           {.method = "POST", .pattern = "/in", .handler = [](const Request& req, Response& res) {
              res.SetContent(absl::StrCat(req.body.size()), "text/plain");
            }}});
  ASSERT_NE(server, nullptr);
  const std::string url = absl::StrCat(server->base_url(), "/hello");
  const std::string dir = ::testing::TempDir();
  const std::string err = dir + "/curl.err";
  const std::string out = dir + "/curl.out";
  const std::string twice =
      absl::StrCat("curl -sv --http1.1 ", url, " ", url, " >", out, " 2>", err);
  ASSERT_EQ(std::system(twice.c_str()), 0);
  EXPECT_EQ(Read(out), "hellohello");
  EXPECT_THAT(Read(err), ::testing::HasSubstr("Re-using existing connection"));
  const std::string body = dir + "/body.bin";
  {
    FILE* f = std::fopen(body.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string bytes(5000, 'x');
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  const absl::Time start = absl::Now();
  const std::string post =
      absl::StrCat("curl -sv --http1.1 -H 'Expect: 100-continue' --data-binary @", body, " ",
                   server->base_url(), "/in >", out, " 2>", err);
  ASSERT_EQ(std::system(post.c_str()), 0);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(900));
  EXPECT_EQ(Read(out), "5000");
  EXPECT_THAT(Read(err), ::testing::HasSubstr("100 Continue"));
}

// HTTPS through the same engine, checked by curl: the certificate is served, two requests share
// one TLS connection, a refusal (431) comes back over TLS too.
TEST(HttpServerTest, HttpsWithCurl) {
  const std::string dir = ::testing::TempDir() + "/https";
  std::filesystem::create_directories(dir);
  const std::string make = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
      "/CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout ",
      dir, "/key.pem -out ", dir, "/cert.pem 2>/dev/null");
  ASSERT_EQ(std::system(make.c_str()), 0);
  auto server =
      StartOrDie({.tls = true,
                  .tls_files = {.cert_file = dir + "/cert.pem", .key_file = dir + "/key.pem"},
                  .limits = {.max_header_bytes = 4096}},
                 {Hello()});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->base_url(), absl::StrCat("https://127.0.0.1:", server->port()));
  const std::string url = absl::StrCat(server->base_url(), "/hello");
  const std::string twice = absl::StrCat("curl -sv --cacert ", dir, "/cert.pem ", url, " ", url,
                                         " >", dir, "/out 2>", dir, "/err");
  ASSERT_EQ(std::system(twice.c_str()), 0);
  EXPECT_EQ(Read(dir + "/out"), "hellohello");
  EXPECT_THAT(Read(dir + "/err"), ::testing::HasSubstr("Re-using existing connection"));
  const std::string big =
      absl::StrCat("curl -s -o ", dir, "/out -w '%{http_code}' --cacert ", dir,
                   "/cert.pem -H 'X-Big: ", std::string(5000, 'a'), "' ", url, " >", dir, "/code");
  ASSERT_EQ(std::system(big.c_str()), 0);
  EXPECT_EQ(Read(dir + "/code"), "431");
  EXPECT_THAT(Read(dir + "/out"), ::testing::HasSubstr("Request header fields larger than 4096"));
}

TEST(HttpServerTest, HtmlEscapeCoversTextAndQuotedAttributes) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\" title='y'>Ана & Đorđe</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Ана &amp; Đorđe&lt;/a&gt;");
}

TEST(HttpServerTest, ParseHostPort) {
  auto v4 = ParseHostPort("127.0.0.1:0");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 0);
  auto v6 = ParseHostPort("[::1]:7443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 7443);
  for (const char* bad : {"localhost", "::1:7443", "host:-1", "host:65536", ":80", "[::1]7443"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace qsign::http
