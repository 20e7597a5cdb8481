#include "tests/testing/watch_streams.h"

#include <dirent.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "consent/statement.h"
#include "qsign/v1/consent.grpc.pb.h"

namespace qsign::testing {

namespace pb = ::qsign::v1;

// One stream: reads until the server ends it; counts what it received.
class WatchStreams::Stream final : public grpc::ClientReadReactor<pb::ConsentRequest> {
 public:
  void Start(pb::Consent::Stub* stub, pb::WatchRequestsRequest req) {
    req_ = std::move(req);
    stub->async()->WatchRequests(&ctx_, &req_, this);
    StartRead(&msg_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }

  void OnReadInitialMetadataDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    opened_ =
        ok && ctx_.GetServerInitialMetadata().count(grpc::string_ref(
                  consent::kWatchOpenMetadata.data(), consent::kWatchOpenMetadata.size())) > 0;
    metadata_done_ = true;
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    {
      absl::MutexLock lock(&mu_);
      ++received_;
    }
    StartRead(&msg_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  mutable absl::Mutex mu_;
  bool metadata_done_ ABSL_GUARDED_BY(mu_) = false;
  bool opened_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int received_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);

 private:
  grpc::ClientContext ctx_;
  pb::WatchRequestsRequest req_;
  pb::ConsentRequest msg_;
};

absl::StatusOr<std::unique_ptr<WatchStreams>> WatchStreams::Open(
    std::shared_ptr<grpc::Channel> channel,
    const std::vector<const consent::ConsentAppSimulator*>& apps, int per_app,
    absl::Duration timeout) {
  auto stub = pb::Consent::NewStub(channel);
  std::unique_ptr<WatchStreams> streams(new WatchStreams());
  const absl::Time deadline = absl::Now() + timeout;
  for (const consent::ConsentAppSimulator* app : apps) {
    for (int i = 0; i < per_app; ++i) {
      pb::GetChallengeRequest creq;
      creq.set_device_id(app->device_id());
      pb::GetChallengeResponse challenge;
      grpc::ClientContext cctx;
      cctx.set_deadline(absl::ToChronoTime(deadline));
      grpc::Status s = stub->GetChallenge(&cctx, creq, &challenge);
      if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetChallenge: ", s.error_message()));
      auto signature = app->Sign(challenge.challenge());
      if (!signature.ok()) return signature.status();
      pb::WatchRequestsRequest req;
      req.set_device_id(app->device_id());
      req.set_challenge(challenge.challenge());
      req.set_signature(*signature);
      streams->streams_.push_back(std::make_unique<Stream>());
      streams->streams_.back()->Start(stub.get(), std::move(req));
    }
  }
  for (const auto& stream : streams->streams_) {
    absl::MutexLock lock(&stream->mu_);
    stream->mu_.AwaitWithDeadline(absl::Condition(&stream->metadata_done_), deadline);
    if (!stream->opened_) {
      stream->mu_.AwaitWithDeadline(absl::Condition(&stream->done_), deadline);
      return absl::FailedPreconditionError(
          absl::StrCat("a stream did not open: ", stream->done_ ? "" : "(no answer in time) ",
                       stream->status_.error_code(), " ", stream->status_.error_message()));
    }
  }
  return streams;
}

WatchStreams::~WatchStreams() {
  for (const auto& stream : streams_) stream->Cancel();
  for (const auto& stream : streams_) {
    absl::MutexLock lock(&stream->mu_);
    stream->mu_.Await(absl::Condition(&stream->done_));
  }
}

int WatchStreams::size() const { return static_cast<int>(streams_.size()); }

int WatchStreams::ReceivedAtLeast(int n) const {
  int count = 0;
  for (const auto& stream : streams_) {
    absl::MutexLock lock(&stream->mu_);
    if (stream->received_ >= n) ++count;
  }
  return count;
}

int WatchStreams::AwaitReceived(int n, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (ReceivedAtLeast(n) < size() && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(20));
  return ReceivedAtLeast(n);
}

std::map<grpc::StatusCode, int> WatchStreams::AwaitEnded(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<grpc::StatusCode, int> codes;
  for (const auto& stream : streams_) {
    absl::MutexLock lock(&stream->mu_);
    stream->mu_.AwaitWithDeadline(absl::Condition(&stream->done_), deadline);
    if (stream->done_) ++codes[stream->status_.error_code()];
  }
  return codes;
}

int ThreadCount(int pid) {
  const std::string dir = pid == 0 ? "/proc/self/task" : absl::StrCat("/proc/", pid, "/task");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

}  // namespace qsign::testing
