// Citizens for tests and benchmarks that run identity and consent: registered at identity,
// proofed at HIGH by the test operator, a consent app (simulator) enrolled with kPin.
#ifndef QSIGN_TESTS_TESTING_PEOPLE_H_
#define QSIGN_TESTS_TESTING_PEOPLE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "consent/app_simulator.h"
#include "qsign/v1/identity.grpc.pb.h"

namespace qsign::testing {

struct Person {
  std::string username;  // person<n>@example.rs
  std::string account_id;
  std::unique_ptr<consent::ConsentAppSimulator> app;  // Enrolled, not yet watching.
};

// Person number `n` (NationalId(n)), through `identity` and consent at `consent_channel`; the
// registration finished by the e-mailed link, read from identity.outbox in the database at
// `conninfo`.
absl::StatusOr<Person> EnrolPerson(v1::Identity::Stub& identity, std::string_view conninfo,
                                   std::shared_ptr<grpc::Channel> consent_channel, int n);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_PEOPLE_H_
