// A signer under SignHash load from a test, as the relying party, consent and lifecycle would
// drive it: an active credential (the test plays lifecycle, with a throwaway certificate), a
// fresh SAD per call (the test plays consent, with the SAD key in consent's token that the
// signer pins) and client threads that record what they were told. Checks afterwards: the
// signature against the key with plain OpenSSL, the SAD in the signer's journal.
// Users: tests/qsignd_ops_test.cc (SIGTERM, PostgreSQL outage) and tests/faults (kill -9).
#ifndef QSIGN_TESTS_TESTING_SIGNING_LOAD_H_
#define QSIGN_TESTS_TESTING_SIGNING_LOAD_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "consent/sad.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hsm/hsm.h"
#include "qsign/v1/signer.grpc.pb.h"

namespace qsign::testing {

// The lifecycle secret the signing tests present, and the `services` file (in `dir`) that lets
// a qsignd accept it. The path.
inline constexpr char kSigningLifecycleSecret[] = "lifecycle-secret";
std::string WriteLifecycleServicesFile(const std::string& dir);

// One SignHash request with its own SAD, and what to look for afterwards.
struct Signing {
  v1::SignHashRequest request;
  std::string sad_id;
  std::string hash;
};

class SigningClient {
 public:
  // Creates and certifies `credential_id` of `account_id` through `channel` (as lifecycle, with
  // kSigningLifecycleSecret) and mints SADs with "qsign-sad-1" in `consent_token` (not owned;
  // outlives the client).
  static absl::StatusOr<std::unique_ptr<SigningClient>> New(std::shared_ptr<grpc::Channel> channel,
                                                            hsm::Hsm* consent_token,
                                                            std::string credential_id,
                                                            std::string account_id = "alice");

  // A request for a fresh random hash with a fresh SAD valid for 10 minutes.
  absl::StatusOr<Signing> NewSigning() const;
  // `count` of them.
  absl::StatusOr<std::vector<Signing>> NewSignings(int count) const;
  // One call with a deadline (a hang shows as DEADLINE_EXCEEDED, not a stuck test).
  grpc::Status SignHash(const Signing& s, v1::SignHashResponse* resp,
                        absl::Duration deadline = absl::Seconds(15)) const;
  // One signature over s.hash that verifies under the credential's key (plain OpenSSL).
  bool Verifies(const Signing& s, const v1::SignHashResponse& resp) const;

  // After the signer came back on another address. Not while calls are in flight.
  void SetChannel(std::shared_ptr<grpc::Channel> channel);
  const std::string& spki() const { return spki_; }
  const std::string& credential_id() const { return credential_id_; }

 private:
  SigningClient() = default;

  std::string credential_id_;
  std::string account_id_;
  std::string spki_;
  std::unique_ptr<v1::Signer::Stub> signer_;
  std::unique_ptr<consent::SadMinter> minter_;
  std::unique_ptr<consent::SadVerifier> verifier_;
};

// Client threads, each sending its share of the work one call after another until it has seen
// `stop_after_failures` failed calls (the fault showing) or runs out of work.
class SigningLoad {
 public:
  struct Outcome {
    std::vector<std::pair<const Signing*, v1::SignHashResponse>> acknowledged;
    std::vector<std::pair<const Signing*, grpc::Status>> failed;
    bool ran_out = false;
  };

  // `work[t]` is thread t's; it must outlive the load.
  SigningLoad(const SigningClient* client, const std::vector<std::vector<Signing>>& work,
              int stop_after_failures);
  ~SigningLoad() { Join(); }

  // Calls answered OK so far.
  int acknowledged() const { return ok_.load(); }
  // Waits until `n` calls were acknowledged; false after `timeout`.
  bool AwaitAcknowledged(int n, absl::Duration timeout) const;
  void Join();
  // Valid after Join.
  const std::vector<Outcome>& outcomes() const { return outcomes_; }
  int CountAcknowledged() const;

 private:
  std::vector<Outcome> outcomes_;
  std::atomic<int> ok_{0};
  std::vector<std::thread> threads_;
};

// The SAD ids in the signer's journal for `credential_id` (a fresh connection, so it works
// after a database restart); INTERNAL if one appears twice.
absl::StatusOr<absl::flat_hash_set<std::string>> SadJournal(const std::string& conninfo,
                                                            const std::string& credential_id);

// grpc.health.v1 Check("") on a fresh channel, as a load balancer's probe would; UNKNOWN when
// the call itself fails.
using HealthStatus = ::grpc::health::v1::HealthCheckResponse::ServingStatus;
HealthStatus Health(const std::string& target);
// Polls until Health(target) == want; false after `timeout`.
bool AwaitHealth(const std::string& target, HealthStatus want, absl::Duration timeout);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_SIGNING_LOAD_H_
