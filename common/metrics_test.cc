#include "common/metrics.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <string>

#include "common/grpc_server.h"
#include "common/metrics_http.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace qsign::metrics {
namespace {

TEST(RegistryTest, RendersCountersGaugesAndCumulativeHistograms) {
  Registry r;
  r.AddCounter("qsign_things_total", "Things.", {{"kind", "a"}});
  r.AddCounter("qsign_things_total", "Things.", {{"kind", "a"}}, 2);
  r.SetGauge("qsign_pool_in_use", "In use.", {}, 3);
  r.Observe("qsign_latency_seconds", "Latency.", {{"m", "x"}}, 0.002, {0.001, 0.01});
  r.Observe("qsign_latency_seconds", "Latency.", {{"m", "x"}}, 0.5, {0.001, 0.01});
  const std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE qsign_things_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_things_total{kind=\"a\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_pool_in_use 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_latency_seconds_bucket{m=\"x\",le=\"0.001\"} 0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("qsign_latency_seconds_bucket{m=\"x\",le=\"0.01\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("qsign_latency_seconds_bucket{m=\"x\",le=\"+Inf\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("qsign_latency_seconds_count{m=\"x\"} 2\n"), std::string::npos) << text;
}

TEST(RegistryTest, HandlesUpdateWithoutLookupsAndRenderLikeTheRest) {
  Registry r;
  Counter* c = r.GetCounter("qsign_signed_total", "Signed.", {{"key_type", "EC_P256"}});
  EXPECT_EQ(c, r.GetCounter("qsign_signed_total", "Signed.", {{"key_type", "EC_P256"}}));
  c->Increment(5);
  r.AddCounter("qsign_signed_total", "Signed.", {{"key_type", "EC_P256"}});
  Gauge* g = r.GetGauge("qsign_in_use", "In use.", {});
  g->Add(2);
  g->Add(-1);
  Histogram* h = r.GetHistogram("qsign_sign_seconds", "Sign.", {}, {0.01, 0.1});
  h->Observe(0.005);
  h->Observe(0.05);
  h->Observe(3);
  const std::string text = r.Render();
  EXPECT_NE(text.find("qsign_signed_total{key_type=\"EC_P256\"} 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE qsign_in_use gauge\nqsign_in_use 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_sign_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_sign_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_sign_seconds_sum 3.055\n"), std::string::npos) << text;
  EXPECT_NE(text.find("qsign_sign_seconds_count 3\n"), std::string::npos) << text;
}

TEST(RegistryTest, EscapesLabelValues) {
  EXPECT_EQ(RenderLabels({{"a", "x\"y\\z\n"}}), "{a=\"x\\\"y\\\\z\\n\"}");
  EXPECT_EQ(RenderLabels({}), "");
}

TEST(RegistryTest, CollectorsRunAtRender) {
  Registry r;
  int calls = 0;
  r.AddCollector([&](Registry& reg) { reg.SetGauge("qsign_calls", "Calls.", {}, ++calls); });
  EXPECT_NE(r.Render().find("qsign_calls 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("qsign_calls 2\n"), std::string::npos);
}

TEST(RegistryTest, RemovedCollectorIsNotCalledAgain) {
  Registry r;
  int calls = 0;
  const Registry::CollectorId id =
      r.AddCollector([&](Registry& reg) { reg.SetGauge("qsign_calls", "Calls.", {}, ++calls); });
  r.Render();
  r.RemoveCollector(id);
  r.Render();
  EXPECT_EQ(calls, 1);
}

TEST(GrpcMetricsTest, EveryRpcIsCountedByMethodAndCodeAndServedOverHttp) {
  Registry registry;
  auto server = GrpcServer::Start({.metrics = &registry}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(stub->Check(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("no.such.Service");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_EQ(stub->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  auto http = MetricsHttpServer::Start("127.0.0.1:0", &registry);
  ASSERT_TRUE(http.ok()) << http.status();
  httplib::Client client("127.0.0.1", (*http)->port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("qsign_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\","
                           "code=\"OK\"} 3\n"),
            std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("qsign_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\","
                           "code=\"NOT_FOUND\"} 1\n"),
            std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("qsign_grpc_request_duration_seconds_count{method=\"/grpc.health.v1."
                           "Health/Check\"} 4\n"),
            std::string::npos)
      << res->body;
}

}  // namespace
}  // namespace qsign::metrics
