#include "common/grpc_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "qsign/v1/signer.grpc.pb.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

// Records which thread ran each call; each call takes a millisecond, so calls overlap.
class ThreadRecordingService final : public pb::Signer::Service {
 public:
  grpc::Status GetCredentialInfo(grpc::ServerContext*, const pb::GetCredentialInfoRequest*,
                                 pb::CredentialInfo*) override {
    absl::SleepFor(absl::Milliseconds(1));
    absl::MutexLock lock(&mu_);
    threads_.insert(static_cast<pid_t>(syscall(SYS_gettid)));
    ++calls_;
    return grpc::Status::OK;
  }

  std::pair<int, size_t> CallsAndThreads() {
    absl::MutexLock lock(&mu_);
    return {calls_, threads_.size()};
  }

 private:
  absl::Mutex mu_;
  std::set<pid_t> threads_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

// Concurrent calls are served by threads the server keeps, not by a new thread for almost every
// call (gRPC's default keeps two idle threads and ends the rest after each call).
TEST(GrpcServerTest, ConcurrentCallsReuseTheServersThreads) {
  ThreadRecordingService service;
  auto server = GrpcServer::Start({}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr int kClients = 8;
  constexpr int kCallsEach = 60;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", c);  // A connection of its own.
      auto stub = pb::Signer::NewStub(grpc::CreateCustomChannel(
          (*server)->local_target(), grpc::InsecureChannelCredentials(), args));
      for (int i = 0; i < kCallsEach; ++i) {
        grpc::ClientContext ctx;
        pb::GetCredentialInfoRequest req;
        pb::CredentialInfo resp;
        EXPECT_TRUE(stub->GetCredentialInfo(&ctx, req, &resp).ok());
      }
    });
  }
  for (std::thread& t : clients) t.join();
  auto [calls, threads] = service.CallsAndThreads();
  EXPECT_EQ(calls, kClients * kCallsEach);
  std::cout << calls << " calls served by " << threads << " threads\n";
  // The idle threads kept (32) plus the ones busy at the peak; gRPC's default made hundreds.
  EXPECT_LE(threads, 48u);
}

}  // namespace
}  // namespace qsign
