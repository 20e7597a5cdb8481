// Append-only journal tables: the audit log, identity's login_journal and consent's decisions are
// rows that are written once and never changed. AppendOnlySql makes PostgreSQL refuse the change.
#ifndef QSIGN_COMMON_DB_JOURNAL_H_
#define QSIGN_COMMON_DB_JOURNAL_H_

#include <string>
#include <string_view>

namespace qsign::db {

// SQL for a migration (run with search_path = the service schema) that makes `table` append-only:
// a trigger function <table>_refuse_change() and triggers that refuse UPDATE, DELETE and TRUNCATE
// with SQLSTATE insufficient_privilege ("<table> is append-only: <op> refused"). `table` is a
// plain lower-case identifier chosen by the code, never by a caller.
std::string AppendOnlySql(std::string_view table);

}  // namespace qsign::db

#endif  // QSIGN_COMMON_DB_JOURNAL_H_
