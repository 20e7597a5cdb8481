// The append-only, hash-chained audit log: one audit_log table in each service schema. Each
// record carries the SHA-256 of the one before, so an edited, removed or reordered record is found
// by VerifyAuditChain; a trigger refuses UPDATE, DELETE and TRUNCATE. Write the audit record in the
// same transaction as the state change it describes.
//
// Limits: whoever can disable the trigger (a superuser) and rewrite every later record can forge a
// consistent chain, and dropping the newest records leaves a valid shorter chain. Give services a
// role without TRUNCATE/UPDATE/DELETE/ALTER on audit_log, and anchor AuditChainHead() outside the
// database to detect those.
#ifndef QSIGN_COMMON_DB_AUDIT_H_
#define QSIGN_COMMON_DB_AUDIT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/db/pg.h"

namespace qsign::db {

// SQL for a service's first migration (runs with search_path = the service schema): the
// audit_log table, its append-only trigger function and triggers.
std::string_view AuditTableSql();

// What happened. Never put PINs, activation codes, tokens, keys or SAD in here: the log is kept
// for years and read by operators. Fields must be valid UTF-8 without NUL bytes.
struct AuditEvent {
  std::string actor;           // Who: account id, operator id, service name. Required.
  std::string action;          // What: "certificate.revoke", "login.approve". Required.
  std::string target;          // On what: certificate serial, account id, request id.
  std::string client_address;  // Peer address as the gRPC edge saw it.
  std::string outcome;         // "ok", "denied", or the status code name.
  std::string details;         // Free text or JSON, no secrets.
};

// Appends `event` at time `at` (truncated to microseconds) to <schema>.audit_log inside `tx`.
// Appends to one schema serialize on an advisory transaction lock. In a REPEATABLE READ or
// SERIALIZABLE transaction a concurrent append surfaces as ABORTED (InTransaction retries it);
// READ COMMITTED transactions just wait.
absl::Status AppendAudit(Tx& tx, std::string_view schema, const AuditEvent& event, absl::Time at);

// Re-reads the whole chain in one snapshot: seq runs 1, 2, 3, ... without gaps, each prev_hash
// equals the previous record's hash, and each hash matches the record's content. DATA_LOSS names
// the first bad seq.
absl::Status VerifyAuditChain(Pool& pool, std::string_view schema);

struct AuditHead {
  int64_t seq = 0;   // 0 for an empty log.
  std::string hash;  // 32 bytes; all zero for an empty log.
};
// The newest record, to anchor outside the database (e.g. signed and shipped to an external log).
absl::StatusOr<AuditHead> AuditChainHead(Pool& pool, std::string_view schema);

// One stored record, as ListAuditRecords reads it.
struct AuditRecord {
  absl::Time at;
  AuditEvent event;
  std::string source;  // The table, e.g. "identity.audit_log".
  int64_t seq = 0;
};

struct AuditPage {
  std::vector<AuditRecord> records;  // Newest first.
  std::string next_page_token;       // Empty: nothing older.
};

// A table holding audit records: its schema-qualified name, written in code (never input), and
// the column that plays the target (consent's decisions journal keeps it as request_id). It has
// an audit record's other columns: seq, at, actor, action, client_address, outcome, details.
struct AuditTable {
  std::string name;
  std::string target_column = "target";
};

// Which records: those in any of `tables` (audit_log, or a journal kept beside it) whose target
// is one of `targets` or whose actor is one of `actors`.
struct AuditQuery {
  std::vector<AuditTable> tables;
  std::vector<std::string> targets;
  std::vector<std::string> actors;
  int page_size = 50;           // 1..1000.
  std::string_view page_token;  // Empty, or a next_page_token of the same query.
};

// The matching records of every table merged, newest first (ties: the later table, the higher
// seq first), at most page_size; the token continues after the last one. INVALID_ARGUMENT
// "page_token: ..." for a token this function did not make for these tables.
absl::StatusOr<AuditPage> ListAuditRecords(Pool& pool, const AuditQuery& query);

// The paging of an account's audit trail as each service's ListAccountAudit RPC takes it:
// page_size 0..200 (0: 50), page_token at most 64 bytes (ListAuditRecords checks the rest).
// Answers the page size to ask for; INVALID_ARGUMENT naming the field otherwise.
absl::StatusOr<int> AccountAuditPageSize(int page_size, std::string_view page_token);

// SQL for a service migration (search_path = the service schema): indexes audit_log by target
// and by actor, for ListAuditRecords. Only the table's owner may index it: with
// deploy/postgres/roles.sql installed, audit_log belongs to qsign_audit and roles.sql makes the
// same two indexes; without it (a laptop, the tests) the service owns the table and this makes
// them. Either way they exist once both have run; neither fails for lack of the other.
std::string_view AuditIndexSql();

// The record hash: SHA-256 over "qsign.audit.v1", prev_hash (32 bytes), seq and the time in Unix
// microseconds (8-byte big-endian each), then each field of `event` in declaration order as an
// 8-byte big-endian length and its bytes.
std::string AuditRecordHash(std::string_view prev_hash, int64_t seq, const AuditEvent& event,
                            absl::Time at);

}  // namespace qsign::db

#endif  // QSIGN_COMMON_DB_AUDIT_H_
