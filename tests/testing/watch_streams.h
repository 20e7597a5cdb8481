// Many open Consent.WatchRequests streams of enrolled consent apps, held by gRPC's callback
// client API (no client thread per stream): what tests and benchmarks open to see what an open
// stream costs the server (threads, memory) and that each still receives its requests.
#ifndef QSIGN_TESTS_TESTING_WATCH_STREAMS_H_
#define QSIGN_TESTS_TESTING_WATCH_STREAMS_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "consent/app_simulator.h"

namespace qsign::testing {

class WatchStreams {
 public:
  // Opens `per_app` streams for each app of `apps` (each its own challenge, signed by the app's
  // device key) on `channel`, and waits up to `timeout` until the server said each is open.
  // Fails when one was refused or did not open in time.
  static absl::StatusOr<std::unique_ptr<WatchStreams>> Open(
      std::shared_ptr<grpc::Channel> channel,
      const std::vector<const consent::ConsentAppSimulator*>& apps, int per_app,
      absl::Duration timeout);
  // Cancels the streams still open and waits for them to end.
  ~WatchStreams();

  int size() const;
  // Streams that have received at least `n` requests.
  int ReceivedAtLeast(int n) const;
  // Waits until every stream has received `n` requests or `timeout`; how many have.
  int AwaitReceived(int n, absl::Duration timeout) const;
  // Waits until every stream has ended or `timeout`; the final status codes, counted.
  std::map<grpc::StatusCode, int> AwaitEnded(absl::Duration timeout) const;

 private:
  class Stream;
  WatchStreams() = default;
  std::vector<std::unique_ptr<Stream>> streams_;
};

// Threads of this process now (/proc/self/task), or of process `pid`.
int ThreadCount(int pid = 0);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_WATCH_STREAMS_H_
