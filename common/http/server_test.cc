#include "common/http/server.h"

#include <httplib.h>

#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/http/html.h"
#include "common/request_id.h"
#include "common/strings.h"
#include "gtest/gtest.h"

namespace qsign::http {
namespace {

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
