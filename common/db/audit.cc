#include "common/db/audit.h"

#include <openssl/evp.h>

#include <algorithm>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/db/journal.h"
#include "common/strings.h"

namespace qsign::db {
namespace {

constexpr size_t kHashSize = 32;
constexpr int kVerifyBatch = 1000;
constexpr char kHashTag[] = "qsign.audit.v1";

constexpr char kAuditTableSql[] = R"sql(
CREATE TABLE audit_log (
  seq bigint PRIMARY KEY CHECK (seq > 0),
  at timestamptz NOT NULL,
  actor text NOT NULL,
  action text NOT NULL,
  target text NOT NULL,
  client_address text NOT NULL,
  outcome text NOT NULL,
  details text NOT NULL,
  prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash bytea NOT NULL CHECK (octet_length(hash) = 32)
);
)sql";

void AppendU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

void AppendField(std::string& out, std::string_view field) {
  AppendU64(out, field.size());
  out.append(field);
}

absl::Time TruncateToMicros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }

absl::Status DataLoss(std::string_view schema, int64_t seq, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("audit log ", Av(schema), ".audit_log is corrupt at seq ", seq, ": ", Av(what)));
}

}  // namespace

std::string_view AuditTableSql() {
  static const std::string* const sql =
      new std::string(absl::StrCat(kAuditTableSql, AppendOnlySql("audit_log")));
  return *sql;
}

std::string AuditRecordHash(std::string_view prev_hash, int64_t seq, const AuditEvent& event,
                            absl::Time at) {
  std::string msg(kHashTag);
  msg.append(prev_hash);
  AppendU64(msg, static_cast<uint64_t>(seq));
  AppendU64(msg, static_cast<uint64_t>(absl::ToUnixMicros(at)));
  AppendField(msg, event.actor);
  AppendField(msg, event.action);
  AppendField(msg, event.target);
  AppendField(msg, event.client_address);
  AppendField(msg, event.outcome);
  AppendField(msg, event.details);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(msg.data(), msg.size(), md, &md_len, EVP_sha256(), nullptr) != 1 ||
      md_len != kHashSize) {
    // SHA-256 over a memory buffer cannot fail short of a broken OpenSSL.
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(md), md_len);
}

absl::Status AppendAudit(Tx& tx, std::string_view schema, const AuditEvent& event, absl::Time at) {
  if (absl::Status st = ValidateIdentifier(schema); !st.ok()) return st;
  if (event.actor.empty()) return absl::InvalidArgumentError("audit event needs an actor");
  if (event.action.empty()) return absl::InvalidArgumentError("audit event needs an action");
  if (at == absl::InfiniteFuture() || at == absl::InfinitePast()) {
    return absl::InvalidArgumentError("audit event time must be finite");
  }
  at = TruncateToMicros(at);

  absl::StatusOr<Result> lock = tx.Exec("SELECT pg_advisory_xact_lock(hashtext($1))",
                                        {Param::Text(absl::StrCat(Av(schema), ".audit_log"))});
  if (!lock.ok()) return lock.status();
  absl::StatusOr<Result> last = tx.Exec(
      absl::StrCat("SELECT seq, hash FROM ", Av(schema), ".audit_log ORDER BY seq DESC LIMIT 1"));
  if (!last.ok()) return last.status();
  int64_t seq = 1;
  std::string prev_hash(kHashSize, '\0');
  if (last->rows() == 1) {
    absl::StatusOr<int64_t> last_seq = last->GetInt64(0, 0);
    if (!last_seq.ok()) return last_seq.status();
    absl::StatusOr<std::string> last_hash = last->GetBytes(0, 1);
    if (!last_hash.ok()) return last_hash.status();
    seq = *last_seq + 1;
    prev_hash = *std::move(last_hash);
  }
  std::string hash = AuditRecordHash(prev_hash, seq, event, at);
  absl::StatusOr<Result> inserted = tx.Exec(
      absl::StrCat("INSERT INTO ", Av(schema),
                   ".audit_log (seq, at, actor, action, target, client_address, outcome, "
                   "details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
      {Param::Int(seq), Param::Time(at), Param::Text(event.actor), Param::Text(event.action),
       Param::Text(event.target), Param::Text(event.client_address), Param::Text(event.outcome),
       Param::Text(event.details), Param::Bytes(prev_hash), Param::Bytes(hash)});
  if (!inserted.ok()) {
    // Only a snapshot older than the lock (REPEATABLE READ / SERIALIZABLE) can miss the latest
    // record and collide on seq: retry the transaction with a fresh snapshot.
    if (inserted.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AbortedError(absl::StrCat("concurrent audit append to ", Av(schema), ": ",
                                             inserted.status().message()));
    }
    return inserted.status();
  }
  return absl::OkStatus();
}

absl::Status VerifyAuditChain(Pool& pool, std::string_view schema) {
  if (absl::Status st = ValidateIdentifier(schema); !st.ok()) return st;
  const std::string sql = absl::StrCat(
      "SELECT seq, at, actor, action, target, client_address, outcome, details, prev_hash, hash "
      "FROM ",
      Av(schema), ".audit_log WHERE seq >= $1 ORDER BY seq LIMIT ", kVerifyBatch);
  return pool.InTransaction(
      [&](Tx& tx) -> absl::Status {
        int64_t expected = 1;
        std::string prev_hash(kHashSize, '\0');
        for (;;) {
          absl::StatusOr<Result> r = tx.Exec(sql, {Param::Int(expected)});
          if (!r.ok()) return r.status();
          for (int row = 0; row < r->rows(); ++row) {
            absl::StatusOr<int64_t> seq = r->GetInt64(row, 0);
            if (!seq.ok()) return seq.status();
            if (*seq != expected) {
              return DataLoss(schema, expected,
                              absl::StrCat("record missing (next is ", *seq, ")"));
            }
            absl::StatusOr<absl::Time> at = r->GetTime(row, 1);
            if (!at.ok()) return at.status();
            AuditEvent event{
                .actor = std::string(r->Get(row, 2)),
                .action = std::string(r->Get(row, 3)),
                .target = std::string(r->Get(row, 4)),
                .client_address = std::string(r->Get(row, 5)),
                .outcome = std::string(r->Get(row, 6)),
                .details = std::string(r->Get(row, 7)),
            };
            absl::StatusOr<std::string> stored_prev = r->GetBytes(row, 8);
            if (!stored_prev.ok()) return stored_prev.status();
            absl::StatusOr<std::string> stored_hash = r->GetBytes(row, 9);
            if (!stored_hash.ok()) return stored_hash.status();
            if (*stored_prev != prev_hash) {
              return DataLoss(schema, expected,
                              "prev_hash differs from the previous record's hash");
            }
            if (AuditRecordHash(prev_hash, expected, event, *at) != *stored_hash) {
              return DataLoss(schema, expected, "hash does not match the record's content");
            }
            prev_hash = *std::move(stored_hash);
            ++expected;
          }
          if (r->rows() < kVerifyBatch) return absl::OkStatus();
        }
      },
      TxOptions{.isolation = Isolation::kRepeatableRead, .read_only = true});
}

absl::StatusOr<AuditHead> AuditChainHead(Pool& pool, std::string_view schema) {
  if (absl::Status st = ValidateIdentifier(schema); !st.ok()) return st;
  absl::StatusOr<Result> r = pool.Exec(
      absl::StrCat("SELECT seq, hash FROM ", Av(schema), ".audit_log ORDER BY seq DESC LIMIT 1"));
  if (!r.ok()) return r.status();
  AuditHead head;
  head.hash.assign(kHashSize, '\0');
  if (r->rows() == 0) return head;
  absl::StatusOr<int64_t> seq = r->GetInt64(0, 0);
  if (!seq.ok()) return seq.status();
  absl::StatusOr<std::string> hash = r->GetBytes(0, 1);
  if (!hash.ok()) return hash.status();
  head.seq = *seq;
  head.hash = *std::move(hash);
  return head;
}

absl::StatusOr<AuditPage> ListAuditRecords(Pool& pool, const AuditQuery& q) {
  if (q.tables.empty() || (q.targets.empty() && q.actors.empty())) {
    return absl::InvalidArgumentError("audit query: a table and a target or actor required");
  }
  if (q.page_size < 1 || q.page_size > 1000) {
    return absl::InvalidArgumentError("page_size: 1..1000");
  }
  // The token: "<unix micros>.<table index>.<seq>" of the last record answered.
  bool first_page = true;
  int64_t after_at = 0, after_src = 0, after_seq = 0;
  if (!q.page_token.empty()) {
    std::vector<absl::string_view> parts = absl::StrSplit(Av(q.page_token), '.');
    if (q.page_token.size() > 64 || parts.size() != 3 || !absl::SimpleAtoi(parts[0], &after_at) ||
        !absl::SimpleAtoi(parts[1], &after_src) || !absl::SimpleAtoi(parts[2], &after_seq) ||
        after_src < 0 || after_src >= static_cast<int64_t>(q.tables.size())) {
      return absl::InvalidArgumentError("page_token: not one this call answered");
    }
    first_page = false;
  }
  std::vector<Param> params;
  std::vector<std::string> targets, actors;
  for (const std::string& t : q.targets) {
    params.push_back(Param::Text(t));
    targets.push_back(absl::StrCat("$", params.size()));
  }
  for (const std::string& a : q.actors) {
    params.push_back(Param::Text(a));
    actors.push_back(absl::StrCat("$", params.size()));
  }
  std::vector<std::string> selects;
  for (size_t i = 0; i < q.tables.size(); ++i) {
    const std::string& target = q.tables[i].target_column;
    std::string where;
    if (!targets.empty()) {
      absl::StrAppend(&where, target, " IN (", absl::StrJoin(targets, ", "), ")");
    }
    if (!actors.empty()) {
      absl::StrAppend(&where, where.empty() ? "" : " OR ", "actor IN (",
                      absl::StrJoin(actors, ", "), ")");
    }
    selects.push_back(absl::StrCat("SELECT at, ", i, " AS src, seq, actor, action, ", target,
                                   " AS target, client_address, outcome, details FROM ",
                                   q.tables[i].name, " WHERE ", where));
  }
  std::string sql =
      absl::StrCat("SELECT at, src, seq, actor, action, target, client_address, ",
                   "outcome, details FROM (", absl::StrJoin(selects, " UNION ALL "), ") r");
  if (!first_page) {
    params.push_back(Param::Time(absl::FromUnixMicros(after_at)));
    params.push_back(Param::Int(after_src));
    params.push_back(Param::Int(after_seq));
    const size_t n = params.size();
    absl::StrAppend(&sql, " WHERE (at, src, seq) < ($", n - 2, ", $", n - 1, ", $", n, ")");
  }
  params.push_back(Param::Int(q.page_size + 1));
  absl::StrAppend(&sql, " ORDER BY at DESC, src DESC, seq DESC LIMIT $", params.size());
  auto rows = pool.Exec(sql, params);
  if (!rows.ok()) return rows.status();
  AuditPage page;
  for (int r = 0; r < rows->rows() && r < q.page_size; ++r) {
    auto at = rows->GetTime(r, 0);
    auto src = rows->GetInt64(r, 1);
    auto seq = rows->GetInt64(r, 2);
    if (!at.ok()) return at.status();
    if (!src.ok()) return src.status();
    if (!seq.ok()) return seq.status();
    AuditRecord rec{.at = *at,
                    .event = {.actor = std::string(rows->Get(r, 3)),
                              .action = std::string(rows->Get(r, 4)),
                              .target = std::string(rows->Get(r, 5)),
                              .client_address = std::string(rows->Get(r, 6)),
                              .outcome = std::string(rows->Get(r, 7)),
                              .details = std::string(rows->Get(r, 8))},
                    .source = q.tables[static_cast<size_t>(*src)].name,
                    .seq = *seq};
    page.records.push_back(std::move(rec));
  }
  if (rows->rows() > q.page_size && !page.records.empty()) {
    const AuditRecord& last = page.records.back();
    const size_t src = static_cast<size_t>(
        std::find_if(q.tables.begin(), q.tables.end(),
                     [&](const AuditTable& t) { return t.name == last.source; }) -
        q.tables.begin());
    page.next_page_token = absl::StrCat(absl::ToUnixMicros(last.at), ".", src, ".", last.seq);
  }
  return page;
}

absl::StatusOr<int> AccountAuditPageSize(int page_size, std::string_view page_token) {
  if (page_size < 0 || page_size > 200) {
    return absl::InvalidArgumentError("page_size: 0..200 (0: 50)");
  }
  if (page_token.size() > 64) return absl::InvalidArgumentError("page_token: too long");
  return page_size == 0 ? 50 : page_size;
}

std::string_view AuditIndexSql() {
  // pg_has_role: the migrating role owns audit_log (or is a superuser); roles.sql's owner,
  // qsign_audit, is a role no service is a member of.
  return R"sql(
DO $qsign_audit_index$
BEGIN
  IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'audit_log'::regclass), 'USAGE') THEN
    CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target, at);
    CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, at);
  END IF;
END
$qsign_audit_index$;
)sql";
}

}  // namespace qsign::db
