#include "tests/testing/audit_pages.h"

#include "gtest/gtest.h"

namespace qsign::testing {

std::vector<qsign::v1::AuditRecord> AllAuditPages(const AuditPageCall& call,
                                                  const std::string& account_id, int page_size) {
  std::vector<qsign::v1::AuditRecord> records;
  std::string page_token;
  for (int page = 0; page < 50; ++page) {
    qsign::v1::ListAccountAuditRequest req;
    req.set_account_id(account_id);
    req.set_page_size(page_size);
    req.set_page_token(page_token);
    qsign::v1::ListAccountAuditResponse resp;
    grpc::Status s = call(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_LE(resp.records_size(), page_size);
    if (!s.ok() || resp.records_size() > page_size) break;
    records.insert(records.end(), resp.records().begin(), resp.records().end());
    page_token = resp.next_page_token();
    if (page_token.empty()) return records;
  }
  ADD_FAILURE() << "the pages did not end";
  return records;
}

}  // namespace qsign::testing
