// StackServer with stand-in stacks: only the sections present are built, in factory order; the
// channel to this process answers UNAVAILABLE until the listener is up and reaches it after;
// Stop() runs in reverse order before gRPC shutdown.
#include "common/daemon/stack_server.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsign/v1/signer.grpc.pb.h"

namespace qsign::daemon {
namespace {

using ::testing::ElementsAre;

std::vector<std::string>& Events() {
  static std::vector<std::string> events;
  return events;
}

// A stack serving the Signer API unimplemented, holding a channel to "signer" (itself).
class StandInStack final : public Stack {
 public:
  StandInStack(std::string name, std::shared_ptr<const DeferredChannel> channel, bool serve)
      : name_(std::move(name)), stub_(std::move(channel)), serve_(serve) {}

  std::vector<Served> services() override {
    if (!serve_) return {};
    return {{qsign::v1::Signer::service_full_name(), &service_}};
  }
  void Start() override {
    // The channel to this process is connected before Start.
    auto stub = stub_.get();
    ASSERT_TRUE(stub.ok()) << stub.status();
    grpc::ClientContext ctx;
    qsign::v1::ListCredentialsRequest req;
    qsign::v1::ListCredentialsResponse resp;
    EXPECT_EQ((*stub)->ListCredentials(&ctx, req, &resp).error_code(), grpc::UNIMPLEMENTED);
    Events().push_back("start " + name_);
  }
  void Stop() override { Events().push_back("stop " + name_); }
  std::string hsm_probe_key() const override { return serve_ ? "key-of-" + name_ : ""; }

 private:
  const std::string name_;
  DeferredStub<qsign::v1::Signer> stub_;
  const bool serve_;
  qsign::v1::Signer::Service service_;
};

absl::StatusOr<std::unique_ptr<Stack>> Build(const StackEnv& env, std::string name, bool serve) {
  auto channel = env.channels->To("signer");
  // The listener does not exist yet.
  auto early = channel->Get();
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(early.status().message(), "signer: not connected yet");
  Events().push_back("build " + name);
  return std::make_unique<StandInStack>(std::move(name), std::move(channel), serve);
}

const StackFactory kSigner{.section = "signer",
                           .build = [](const StackEnv& env) { return Build(env, "signer", true); }};
const StackFactory kConsent{
    .section = "consent", .build = [](const StackEnv& env) { return Build(env, "consent", true); }};
const StackFactory kGateway{.section = "gateway", .build = [](const StackEnv& env) {
                              return Build(env, "gateway", false);
                            }};
const StackFactory kBroken{.section = "identity",
                           .build = [](const StackEnv&) -> absl::StatusOr<std::unique_ptr<Stack>> {
                             return absl::InvalidArgumentError("identity.x: broken");
                           }};

config::v1::ServerConfig Config() {
  config::v1::ServerConfig config;
  config.set_listen("127.0.0.1:0");
  config.mutable_signer();
  config.mutable_gateway();
  config.mutable_identity();
  return config;
}

TEST(StackServerTest, BuildsThePresentSectionsStartsThemAndStopsThemInReverse) {
  Events().clear();
  const config::v1::ServerConfig config = Config();
  auto server = StackServer::Start({.config = &config}, {kSigner, kConsent, kGateway});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_THAT((*server)->service_names(), ElementsAre("qsign.v1.Signer"));
  EXPECT_EQ((*server)->hsm_probe_key("signer"), "key-of-signer");
  EXPECT_EQ((*server)->hsm_probe_key("identity"), "");
  EXPECT_NE((*server)->stack("gateway"), nullptr);
  EXPECT_EQ((*server)->stack("consent"), nullptr);
  (*server)->Shutdown(absl::ZeroDuration());
  (*server)->Shutdown(absl::ZeroDuration());  // Once.
  EXPECT_THAT(Events(), ElementsAre("build signer", "build gateway", "start signer",
                                    "start gateway", "stop gateway", "stop signer"));
}

TEST(StackServerTest, AFailingStackIsNamedAndTheOthersStop) {
  Events().clear();
  const config::v1::ServerConfig config = Config();
  auto server = StackServer::Start({.config = &config}, {kSigner, kBroken, kGateway});
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server.status().message(), "identity.x: broken");
  EXPECT_THAT(Events(), ElementsAre("build signer", "stop signer"));
}

TEST(DeferredChannelTest, SetOnceThenEveryStubCallGoesThrough) {
  auto channel = std::make_shared<DeferredChannel>("lifecycle");
  DeferredStub<qsign::v1::Signer> stub(channel);
  EXPECT_EQ(stub.get().status().message(), "lifecycle: not connected yet");
  channel->Set(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  auto first = stub.get();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*stub.get(), *first);  // Made once.
  EXPECT_TRUE(DeferredChannel::Connected(
                  "x", grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()))
                  ->Get()
                  .ok());
}

TEST(ChannelsTest, AServiceHereWaitsForTheListenerOneAtItsPeerIsConnectedAtOnce) {
  config::v1::ServerConfig config;
  config.mutable_signer();
  config.mutable_peers()->set_consent("127.0.0.1:1");
  Channels channels(config, nullptr);
  auto signer = channels.To("signer");
  EXPECT_EQ(signer->Get().status().message(), "signer: not connected yet");
  EXPECT_TRUE(channels.To("consent")->Get().ok());
  channels.ConnectSelf("127.0.0.1:2");
  EXPECT_TRUE(signer->Get().ok());
  EXPECT_EQ(channels.To("signer"), signer);  // One per service.
}

}  // namespace
}  // namespace qsign::daemon
