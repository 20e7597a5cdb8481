// The registration office's view of an account's audit trail: identity's, lifecycle's and
// consent's records merged newest first, a page at a time. Each service answers for its own
// records (ListAccountAudit, paged by its own token); the console's page token carries one
// position per service. No gRPC types: the caller passes the fetch.
#ifndef QSIGN_SERVICES_WEB_AUDIT_TRAIL_H_
#define QSIGN_SERVICES_WEB_AUDIT_TRAIL_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qsign/v1/common.pb.h"

namespace qsign::web {

// The services that keep an account's records, in the order ties are shown.
enum class AuditSource { kIdentity = 0, kLifecycle = 1, kConsent = 2 };
inline constexpr int kAuditSources = 3;
std::string_view AuditSourceName(AuditSource source);

// One ListAccountAudit call to `source`.
using AuditFetch = absl::FunctionRef<absl::StatusOr<qsign::v1::ListAccountAuditResponse>(
    AuditSource source, const qsign::v1::ListAccountAuditRequest& request)>;

struct AuditTrailPage {
  std::vector<qsign::v1::AuditRecord> records;  // Newest first, at most page_size.
  std::string next_page;                        // Empty: no older records anywhere.
  // Services that failed this time: their records are missing from this page, and the next
  // page asks them again from the same position.
  std::vector<std::pair<AuditSource, absl::Status>> failures;
};

// The page after `page` (empty: the newest) of the account's merged trail: each service is asked
// for page_size records from its position, the newest page_size of them all are shown, and each
// service's position moves past exactly the records of it shown (one more call to it when only
// some were). No record is skipped; if new records arrive between those two calls to one service
// (first page only), the next page may show some records again. INVALID_ARGUMENT "page: ..." for
// a token this function did not make; NOT_FOUND when identity does not know the account.
absl::StatusOr<AuditTrailPage> MergedAuditTrail(std::string_view account_id, std::string_view page,
                                                int page_size, AuditFetch fetch);

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_AUDIT_TRAIL_H_
