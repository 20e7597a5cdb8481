#include "common/request_id.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/grpc_request_id.h"
#include "common/grpc_server.h"
#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsign/v1/signer.grpc.pb.h"

namespace qsign::request_id {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// Log lines captured from every thread while a test runs.
absl::Mutex captured_mu;
std::vector<std::string>* captured ABSL_GUARDED_BY(captured_mu) = nullptr;

void Capture(std::string_view line) {
  absl::MutexLock lock(&captured_mu);
  if (captured != nullptr) captured->emplace_back(line);
}

class CapturedLogs {
 public:
  CapturedLogs() {
    absl::MutexLock lock(&captured_mu);
    captured = &lines_;
    SetLogSinkForTesting(&Capture);
  }
  ~CapturedLogs() {
    SetLogSinkForTesting(nullptr);
    absl::MutexLock lock(&captured_mu);
    captured = nullptr;
  }
  // The first line whose msg is `msg`; "" if none.
  std::string Line(const std::string& msg) {
    absl::MutexLock lock(&captured_mu);
    for (const std::string& line : lines_) {
      if (line.find("\"msg\":\"" + msg + "\"") != std::string::npos) return line;
    }
    return "";
  }

 private:
  std::vector<std::string> lines_;
};

TEST(RequestIdTest, WellFormedIsShortAndPlain) {
  EXPECT_TRUE(IsWellFormed("abc-DEF_0.9"));
  EXPECT_TRUE(IsWellFormed(std::string(64, 'a')));
  EXPECT_FALSE(IsWellFormed(""));
  EXPECT_FALSE(IsWellFormed(std::string(65, 'a')));
  EXPECT_FALSE(IsWellFormed("a b"));
  EXPECT_FALSE(IsWellFormed("a\"b"));
  EXPECT_FALSE(IsWellFormed("a\nb"));
}

TEST(RequestIdTest, GeneratedIdsAre128BitHexAndDiffer) {
  const std::string a = Generate();
  EXPECT_THAT(a, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(a, Generate());
  EXPECT_EQ(AcceptOrGenerate("given-1"), "given-1");
  EXPECT_THAT(AcceptOrGenerate("not ok"), MatchesRegex("[0-9a-f]{32}"));
}

// Ids come from a per-thread buffer of random bytes refilled every 256 ids: across refills and
// across threads no id repeats.
TEST(RequestIdTest, NoIdRepeatsAcrossBufferRefillsAndThreads) {
  std::vector<std::string> ids[2];
  std::thread other([&] {
    for (int i = 0; i < 1000; ++i) ids[1].push_back(Generate());
  });
  for (int i = 0; i < 1000; ++i) ids[0].push_back(Generate());
  other.join();
  std::set<std::string> distinct;
  for (const auto& list : ids) {
    for (const auto& id : list) {
      EXPECT_THAT(id, MatchesRegex("[0-9a-f]{32}"));
      distinct.insert(id);
    }
  }
  EXPECT_EQ(distinct.size(), 2000u);
}

TEST(RequestIdTest, LogLinesCarryTheCurrentIdOnlyInsideItsScope) {
  CapturedLogs logs;
  EXPECT_EQ(Current(), "");
  Log(LogLevel::kInfo, "test", "before");
  {
    ScopedRequestId outer("outer-1");
    Log(LogLevel::kInfo, "test", "inside");
    {
      ScopedRequestId inner("inner-2");
      EXPECT_EQ(Current(), "inner-2");
    }
    EXPECT_EQ(Current(), "outer-1");
    Log(LogLevel::kInfo, "test", "named", {{"request_id", "explicit"}});
  }
  Log(LogLevel::kInfo, "test", "after");
  EXPECT_THAT(logs.Line("before"), Not(HasSubstr("request_id")));
  EXPECT_THAT(logs.Line("inside"), HasSubstr(",\"request_id\":\"outer-1\""));
  const std::string named = logs.Line("named");
  EXPECT_THAT(named, HasSubstr("\"request_id\":\"explicit\""));
  EXPECT_THAT(named, Not(HasSubstr("outer-1")));
  EXPECT_THAT(logs.Line("after"), Not(HasSubstr("request_id")));
}

namespace pb = ::qsign::v1;

// A service whose one RPC logs and, if it has a next hop, calls it the way qsign's gRPC clients
// do (ForwardRequestId on the ClientContext).
class HopService final : public pb::Signer::Service {
 public:
  HopService(std::string name, std::unique_ptr<pb::Signer::Stub> next)
      : name_(std::move(name)), next_(std::move(next)) {}

  grpc::Status GetCredentialInfo(grpc::ServerContext*, const pb::GetCredentialInfoRequest* req,
                                 pb::CredentialInfo* resp) override {
    Log(LogLevel::kInfo, "test", name_);
    if (next_ == nullptr) return grpc::Status::OK;
    grpc::ClientContext ctx;
    ForwardRequestId(&ctx);
    return next_->GetCredentialInfo(&ctx, *req, resp);
  }

 private:
  std::string name_;
  std::unique_ptr<pb::Signer::Stub> next_;
};

class RequestIdGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    back_service_ = std::make_unique<HopService>("back", nullptr);
    auto back = GrpcServer::Start({}, {back_service_.get()});
    ASSERT_TRUE(back.ok()) << back.status();
    back_ = *std::move(back);
    front_service_ = std::make_unique<HopService>(
        "front", pb::Signer::NewStub(grpc::CreateChannel(back_->local_target(),
                                                         grpc::InsecureChannelCredentials())));
    auto front = GrpcServer::Start({}, {front_service_.get()});
    ASSERT_TRUE(front.ok()) << front.status();
    front_ = *std::move(front);
    stub_ = pb::Signer::NewStub(
        grpc::CreateChannel(front_->local_target(), grpc::InsecureChannelCredentials()));
  }

  // Calls the front service, sending `incoming` as x-request-id unless it is null; answers the
  // id the front echoed.
  std::string Call(const char* incoming) {
    grpc::ClientContext ctx;
    if (incoming != nullptr) ctx.AddMetadata(kMetadataKey, incoming);
    pb::GetCredentialInfoRequest req;
    pb::CredentialInfo resp;
    grpc::Status s = stub_->GetCredentialInfo(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    const auto& md = ctx.GetServerInitialMetadata();
    auto it = md.find(kMetadataKey);
    if (it == md.end()) return "";
    return std::string(it->second.data(), it->second.size());
  }

  std::unique_ptr<HopService> back_service_;
  std::unique_ptr<HopService> front_service_;
  std::unique_ptr<GrpcServer> back_;
  std::unique_ptr<GrpcServer> front_;
  std::unique_ptr<pb::Signer::Stub> stub_;
};

TEST_F(RequestIdGrpcTest, AWellFormedIdIsEchoedAndReachesBothServicesLogs) {
  CapturedLogs logs;
  EXPECT_EQ(Call("login-7f3a.b_c"), "login-7f3a.b_c");
  EXPECT_THAT(logs.Line("front"), HasSubstr("\"request_id\":\"login-7f3a.b_c\""));
  EXPECT_THAT(logs.Line("back"), HasSubstr("\"request_id\":\"login-7f3a.b_c\""));
}

TEST_F(RequestIdGrpcTest, AMalformedIdIsReplacedByAGeneratedOne) {
  CapturedLogs logs;
  const std::string echoed = Call("two words\"}");
  EXPECT_THAT(echoed, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_THAT(logs.Line("front"), HasSubstr("\"request_id\":\"" + echoed + "\""));
  EXPECT_THAT(logs.Line("back"), HasSubstr("\"request_id\":\"" + echoed + "\""));
  EXPECT_THAT(logs.Line("front"), Not(HasSubstr("two words")));
}

TEST_F(RequestIdGrpcTest, ACallWithoutAnIdGetsAFreshOneEachTime) {
  CapturedLogs logs;
  const std::string first = Call(nullptr);
  EXPECT_THAT(first, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_THAT(logs.Line("back"), HasSubstr("\"request_id\":\"" + first + "\""));
  const std::string second = Call(nullptr);
  EXPECT_THAT(second, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(first, second);
}

}  // namespace
}  // namespace qsign::request_id
