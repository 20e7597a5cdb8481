// The identity service's answers to its clients (consent), faked on real gRPC on loopback, for
// tests that pick their own account ids and proofing times instead of registering people:
// activation codes the test hands out, proofing times it sets, session tokens it names. Every
// other Identity RPC is UNIMPLEMENTED. Start the consent stack with peers.identity = target().
#ifndef QSIGN_TESTS_TESTING_FAKE_IDENTITY_SERVER_H_
#define QSIGN_TESTS_TESTING_FAKE_IDENTITY_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::testing {

class FakeIdentityServer {
 public:
  static absl::StatusOr<std::unique_ptr<FakeIdentityServer>> Start();
  ~FakeIdentityServer();
  FakeIdentityServer(const FakeIdentityServer&) = delete;
  FakeIdentityServer& operator=(const FakeIdentityServer&) = delete;

  std::string target() const;

  // A one-time activation code for `account_id`, as ProofIdentity would hand out.
  std::string NewCode(const std::string& account_id);
  // GetAccount answers proofed_at = `at` for `account_id` (default: never proofed).
  void SetProofedAt(const std::string& account_id, absl::Time at);
  // A session token of `account_id`, signed by this fake's session key (served by
  // GetSessionKeys; ListSessionRevocations is empty), valid at any test clock's time.
  std::string Session(const std::string& account_id);
  // Codes redeemed so far.
  int redemptions() const;

 private:
  class Service;
  explicit FakeIdentityServer(std::unique_ptr<Service> service);
  std::unique_ptr<Service> service_;
};

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_FAKE_IDENTITY_SERVER_H_
