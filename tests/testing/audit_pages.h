// An account's audit trail as an operator pages through one service's ListAccountAudit.
#ifndef QSIGN_TESTS_TESTING_AUDIT_PAGES_H_
#define QSIGN_TESTS_TESTING_AUDIT_PAGES_H_

#include <functional>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "qsign/v1/common.pb.h"

namespace qsign::testing {

// One ListAccountAudit call with the operator's credential.
using AuditPageCall = std::function<grpc::Status(const qsign::v1::ListAccountAuditRequest&,
                                                 qsign::v1::ListAccountAuditResponse*)>;

// Every page for `account_id`, `page_size` at a time, following next_page_token to the end (at
// most 50 pages): the records in the order answered. A refused page or one longer than
// page_size fails the test (gtest) and ends the walk.
std::vector<qsign::v1::AuditRecord> AllAuditPages(const AuditPageCall& call,
                                                  const std::string& account_id, int page_size);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_AUDIT_PAGES_H_
