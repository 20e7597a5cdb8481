// What the crash and fault tests share: a qsignd config running identity, consent, the signer
// and (optionally) lifecycle, with every file those read written to the test's directory and the
// credentials the test's clients present; and a citizen's login as a portal does it.
#ifndef QSIGN_TESTS_FAULTS_FAULT_STACK_H_
#define QSIGN_TESTS_FAULTS_FAULT_STACK_H_

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tests/testing/service_env.h"

namespace qsign::testing {

// LaptopConfig with `services` (of "identity", "consent", "signer", "lifecycle") and what they
// need: the operator kOperatorId, the test's lifecycle credential (kSigningLifecycleSecret),
// each service's own secret for its calls to the others, a PIN pepper, cheap PIN hashing and no
// per-address, per-account or per-device limits (every client here is 127.0.0.1 and logs in
// again and again).
config::v1::ServerConfig FaultStackConfig(const ServiceEnv& env,
                                          const std::vector<std::string>& services);

// StartLogin + AwaitLogin of `username` (its app approves on its own): the session token, or
// empty when the login failed or was not approved within a few seconds.
std::string Login(v1::Identity::Stub& identity, const std::string& username);

// The first column of every row `sql` returns (a test failure, and empty, when it fails).
std::set<std::string> Column(db::Connection& conn, const std::string& sql);

// Polls until `n` >= `want`: false after `timeout`.
bool AwaitAtLeast(const std::atomic<int>& n, int want, absl::Duration timeout);

// How many of the logins the portals were told succeeded (account_id -> count) have no session
// in the database at `conninfo` (a session of an APPROVED login of that account): 0 when every
// acknowledged login was recorded.
absl::StatusOr<int> SessionsMissing(const std::string& conninfo,
                                    const std::map<std::string, int>& logins_of);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_FAULTS_FAULT_STACK_H_
