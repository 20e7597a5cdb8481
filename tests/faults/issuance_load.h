// Citizens issuing and revoking qualified certificates through lifecycle while a test kills
// processes (tests/faults): each citizen's Issue retried with the same client_request_id until
// acknowledged, then its Revoke until acknowledged, again and again; what each was told is kept
// and checked afterwards against the database and a repeated Issue.
#ifndef QSIGN_TESTS_FAULTS_ISSUANCE_LOAD_H_
#define QSIGN_TESTS_FAULTS_ISSUANCE_LOAD_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qsign/v1/lifecycle.grpc.pb.h"

namespace qsign::testing {

// One citizen's Issue (then Revoke) as the client saw it.
struct Issuance {
  int person = 0;
  std::string client_request_id;
  std::string certificate_id;  // Set once Issue was acknowledged.
  bool revoke_sent = false;
  bool revoke_acknowledged = false;
};

class IssuanceLoad {
 public:
  // `channel` is asked before every call (a test may point it at a restarted process).
  explicit IssuanceLoad(std::function<std::shared_ptr<grpc::Channel>()> channel)
      : channel_(std::move(channel)) {}
  ~IssuanceLoad() { Stop(); }

  // One call each, as citizen with session `token`.
  grpc::Status Issue(const std::string& token, const std::string& request_id,
                     v1::Certificate* out) const;
  grpc::Status Revoke(const std::string& token, const std::string& certificate_id) const;
  grpc::Status AcceptContract(const std::string& token) const;

  // One citizen thread per session token (citizen i is person i), until Stop.
  void Start(std::vector<std::string> tokens);
  void Stop();

  int IssuesAcknowledged();
  // Waits until `n` Issues were acknowledged; false after `timeout`.
  bool AwaitIssues(int n, absl::Duration timeout);
  int failed_calls() const { return failed_calls_.load(); }

  struct Checked {
    int acknowledged = 0;
    int revokes_acknowledged = 0;
    int same_on_retry = 0;
    int lost = 0;
  };
  // After Stop: every acknowledged Issue is in `issued` (the certificates ISSUED now) unless its
  // Revoke was sent, every acknowledged Revoke is in neither `issued` nor `active` (the active
  // credentials), and each acknowledged Issue sent again with its client_request_id returns the
  // same certificate. Each difference is a test failure naming it.
  Checked Check(const std::set<std::string>& issued, const std::set<std::string>& active);

 private:
  void Citizen(int person, const std::string& token);

  const std::function<std::shared_ptr<grpc::Channel>()> channel_;
  std::vector<std::string> tokens_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::atomic<int> failed_calls_{0};
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Issuance>> issuances_ ABSL_GUARDED_BY(mu_);
  int issues_acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_FAULTS_ISSUANCE_LOAD_H_
