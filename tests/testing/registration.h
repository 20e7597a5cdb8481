// Registering as a user does: RegisterAccount, then the link identity e-mailed, read from
// identity's outbox (the user's mailbox), through ConfirmRegistration.
#ifndef QSIGN_TESTS_TESTING_REGISTRATION_H_
#define QSIGN_TESTS_TESTING_REGISTRATION_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/db/pg.h"
#include "qsign/v1/identity.grpc.pb.h"

namespace qsign::testing {

// The token of the newest registration link identity queued for `username` (lower case), read
// from identity.outbox in `pool`'s database. NOT_FOUND when there is none.
absl::StatusOr<std::string> RegistrationToken(db::Pool& pool, std::string_view username);
// The same through one connection opened to `conninfo` (for a test without a pool).
absl::StatusOr<std::string> RegistrationToken(std::string_view conninfo, std::string_view username);

// RegisterAccount(request), then ConfirmRegistration with the e-mailed token: the new account.
absl::StatusOr<v1::Account> RegisterAndConfirm(v1::Identity::Stub& identity, db::Pool& pool,
                                               const v1::RegisterAccountRequest& request);
absl::StatusOr<v1::Account> RegisterAndConfirm(v1::Identity::Stub& identity,
                                               std::string_view conninfo,
                                               const v1::RegisterAccountRequest& request);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_REGISTRATION_H_
