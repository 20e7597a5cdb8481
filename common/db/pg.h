// PostgreSQL access for every qsign service: one SQLSTATE mapping, RAII libpq handles, typed
// parameters, a thread-safe connection pool and retried transactions.
//
// Conventions (one scheme, used everywhere):
//  - Results come back in TEXT format. Each connection is set up with TimeZone=UTC,
//    DateStyle=ISO, bytea_output=hex and client_encoding=UTF8; never RESET or change these.
//  - bytea columns: Result::GetBytes decodes the "\x..." hex text. Param::Bytes is sent in binary
//    format (typed bytea), so NUL bytes and arbitrary data round-trip exactly.
//  - Time: store timestamptz. Param::Time sends a typed timestamptz; Result::GetTime reads a
//    timestamptz column (or a bigint column holding microseconds since the Unix epoch).
//    PostgreSQL keeps microseconds: sub-microsecond parts are truncated (towards the past).
//    absl::InfiniteFuture()/InfinitePast() map to 'infinity'/'-infinity'.
//  - Param::Int, Param::Bool, Param::Time and Param::Bytes carry their type (int8, bool,
//    timestamptz, bytea); Param::Text and Param::Null are untyped, so the server infers the type
//    from the context (text, uuid, jsonb, ...). Cast ($1::uuid) where the context is ambiguous.
//  - Statements are prepared once per connection (keyed by SQL text and parameter types) and then
//    executed by name, so write SQL with $1..$n placeholders, never with values pasted in.
//    A cached statement invalidated by a schema change is dropped and the attempt reported as
//    ABORTED, which Pool::Exec and Pool::InTransaction retry. Never DISCARD ALL or DEALLOCATE.
//    A connection that breaks is replaced by a new one, which prepares its statements again on
//    first use. A statement given fewer or more parameters than its $n placeholders is INTERNAL
//    (a bug in our SQL), named as such.
//  - Round trips: a transaction's BEGIN (and its SET LOCALs) travels with its first statement in
//    one round trip (libpq pipeline mode), so BEGIN; statement; COMMIT costs two, not three; a
//    transaction that ends with Tx::ExecAndCommit sends its last statement and COMMIT together
//    too (BEGIN; statement; statement + COMMIT: two).
//  - Errors: every server error goes through SqlstateToStatus. A lost connection is UNAVAILABLE.
//    Status messages carry the server's primary message and SQLSTATE, never the DETAIL (which
//    may quote row values).
#ifndef QSIGN_COMMON_DB_PG_H_
#define QSIGN_COMMON_DB_PG_H_

#include <libpq-fe.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign::db {

// The one SQLSTATE -> absl::Status mapping:
//   23505 unique_violation                        ALREADY_EXISTS
//   other 23xxx integrity constraint violations   FAILED_PRECONDITION
//   40001 serialization_failure, 40P01 deadlock,
//   55P03 lock_not_available                      ABORTED (retry the whole transaction)
//   08xxx connection exceptions, 57P0x shutdown   UNAVAILABLE
//   57014 query_canceled (statement_timeout)      DEADLINE_EXCEEDED
//   53xxx insufficient resources                  RESOURCE_EXHAUSTED
//   22xxx data exceptions                         INVALID_ARGUMENT
//   42xxx syntax / access rule violations         INTERNAL (a bug in our SQL or grants)
//   anything else                                 INTERNAL
// The message is `message` followed by " [SQLSTATE xxxxx]".
absl::Status SqlstateToStatus(std::string_view sqlstate, std::string_view message);

// OK if `name` can be pasted into SQL unquoted as a schema or table name: [a-z_][a-z0-9_]*, at
// most 63 bytes, not starting with "pg_". INVALID_ARGUMENT otherwise. (A reserved word such as
// "user" passes here and then fails as a syntax error: don't name a schema that.)
absl::Status ValidateIdentifier(std::string_view name);

struct PgConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct PgResultDeleter {
  void operator()(PGresult* res) const { PQclear(res); }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

// A successful statement's result (text format). Row and column indexes are 0-based; an index out
// of range is a bug in the caller and aborts the process.
class Result {
 public:
  explicit Result(PgResultPtr res) : res_(std::move(res)) {}

  int rows() const;
  int columns() const;
  // Rows touched by INSERT/UPDATE/DELETE (or returned by SELECT).
  int64_t affected_rows() const;

  // The value's text; empty for NULL. Valid as long as this Result.
  std::string_view Get(int row, int col) const;
  bool IsNull(int row, int col) const;

  // Typed getters. NULL, or a value that does not parse as the type, is INTERNAL (the SQL and the
  // code disagree); the message names the column.
  absl::StatusOr<int64_t> GetInt64(int row, int col) const;
  absl::StatusOr<bool> GetBool(int row, int col) const;
  // A bytea column, decoded to raw bytes.
  absl::StatusOr<std::string> GetBytes(int row, int col) const;
  // A timestamptz column, or a bigint of microseconds since the Unix epoch.
  absl::StatusOr<absl::Time> GetTime(int row, int col) const;

 private:
  void CheckIndex(int row, int col) const;
  absl::Status ValueError(int row, int col, std::string_view what) const;

  PgResultPtr res_;
};

// A statement parameter. Values are copied.
class Param {
 public:
  static Param Text(std::string_view value);
  static Param Bytes(std::string_view raw);
  static Param Int(int64_t value);
  static Param Bool(bool value);
  static Param Time(absl::Time value);
  static Param Null();

  Oid type() const { return type_; }
  bool is_null() const { return null_; }
  bool is_binary() const { return binary_; }
  const std::string& value() const { return value_; }

 private:
  Param(Oid type, bool binary, bool null, std::string value)
      : type_(type), binary_(binary), null_(null), value_(std::move(value)) {}

  Oid type_ = 0;
  bool binary_ = false;
  bool null_ = false;
  std::string value_;
};

// One libpq connection with its prepared-statement cache. Not thread-safe: a connection is used
// by one thread at a time (the Pool guarantees that).
class Connection {
 public:
  // `conninfo` is a libpq connection string ("host=/run/pg dbname=qsign user=signer") or URI.
  // A malformed string is INVALID_ARGUMENT; a server that cannot be reached is UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(std::string_view conninfo);

  // One statement with $1..$n parameters, prepared on first use.
  absl::StatusOr<Result> Exec(std::string_view sql, std::span<const Param> params = {});
  absl::StatusOr<Result> Exec(std::string_view sql, std::initializer_list<Param> params) {
    return Exec(sql, std::span<const Param>(params.begin(), params.size()));
  }
  // The statements of `prefix` (no parameters, one statement each: BEGIN, SET LOCAL ...) and
  // then `sql`, sent together and answered in one round trip (libpq pipeline mode). A failing
  // prefix statement's error is returned and `sql` does not run.
  absl::StatusOr<Result> ExecAfter(std::span<const std::string> prefix, std::string_view sql,
                                   std::span<const Param> params);
  // As ExecAfter, with COMMIT sent after `sql` in the same pipeline (one round trip). The server
  // runs the COMMIT only if every statement before it succeeded (a pipeline skips everything
  // after its first error, and the transaction stays aborted): the first error is returned, so a
  // failing `sql` never commits what the transaction did before it. A COMMIT that the server
  // answers with ROLLBACK (the transaction had failed earlier) is ABORTED, never OK.
  absl::StatusOr<Result> ExecAfterThenCommit(std::span<const std::string> prefix,
                                             std::string_view sql, std::span<const Param> params);
  // Any number of statements separated by ';', no parameters, nothing cached (migrations,
  // BEGIN/COMMIT). Returns the last statement's error, if any.
  absl::Status ExecScript(std::string_view sql);

  // Requests answered by the server on this connection (each a wait for its reply) since the
  // last call; resets the count.
  int64_t TakeRoundTrips() { return std::exchange(round_trips_, 0); }

  // False once the connection is known to be broken. Reads whatever the server sent without
  // blocking, so a connection the server closed while idle is noticed here.
  bool Healthy();
  // PQTRANS_IDLE outside a transaction, PQTRANS_INTRANS / PQTRANS_INERROR inside one.
  PGTransactionStatusType transaction_status() const;

 private:
  struct Bound;
  struct Prepared {
    std::string name;  // The server-side statement name.
    int params = 0;    // Its $n placeholders, as the server counted them.
  };

  explicit Connection(PgConnPtr conn) : conn_(std::move(conn)) {}
  absl::Status ErrorStatus(const PGresult* res) const;
  absl::StatusOr<Result> Finish(PgResultPtr res, bool cached_statement, const std::string& key);
  static absl::Status Bind(std::string_view sql, std::span<const Param> params, Bound* out);
  absl::StatusOr<Result> ExecInPipeline(std::span<const std::string> prefix, std::string_view sql,
                                        std::span<const Param> params, bool commit);
  // The pipeline behind ExecAfter (prefix non-empty) and ExecAfterThenCommit (`commit`); `name`
  // null runs the statement unprepared.
  absl::StatusOr<Result> ExecPipelined(std::span<const std::string> prefix, const Bound& bound,
                                       const std::string* name, bool commit);

  PgConnPtr conn_;
  // Key: SQL text, '\0', the parameter type OIDs.
  absl::flat_hash_map<std::string, Prepared> statements_;
  int64_t next_statement_ = 0;
  int64_t round_trips_ = 0;
  // Set when a pipeline left libpq in a state this class cannot recover; never used again.
  bool broken_ = false;
};

// A transaction in progress, handed to the function given to Pool::InTransaction. Any database
// error ends the transaction's usefulness (PostgreSQL aborts it; there are no savepoints here):
// return the error. If fn returns OK anyway, InTransaction still rolls back and returns that
// first error.
class Tx {
 public:
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;

  absl::StatusOr<Result> Exec(std::string_view sql, std::span<const Param> params = {});
  absl::StatusOr<Result> Exec(std::string_view sql, std::initializer_list<Param> params) {
    return Exec(sql, std::span<const Param>(params.begin(), params.size()));
  }
  absl::Status ExecScript(std::string_view sql);
  // The transaction's last statement and its COMMIT, sent together: one round trip instead of
  // two. The COMMIT runs only if `sql` (and everything before it in the transaction) succeeded;
  // otherwise the transaction rolls back and the first error is returned. Answers `sql`'s result
  // once committed; a COMMIT that fails is that error (UNKNOWN when the connection was lost after
  // sending it: it may or may not have committed). Call it last and return what it answers: the
  // transaction takes no statement after it (FAILED_PRECONDITION), and an error fn returns after
  // a successful ExecAndCommit is returned as is, over a transaction that committed.
  absl::StatusOr<Result> ExecAndCommit(std::string_view sql, std::span<const Param> params = {});
  absl::StatusOr<Result> ExecAndCommit(std::string_view sql, std::initializer_list<Param> params) {
    return ExecAndCommit(sql, std::span<const Param>(params.begin(), params.size()));
  }

 private:
  friend class Pool;
  Tx(Connection* conn, std::vector<std::string> begin) : conn_(conn), begin_(std::move(begin)) {}
  void Record(const absl::Status& status);
  // FAILED_PRECONDITION once ExecAndCommit ran.
  absl::Status RequireOpen() const;

  Connection* conn_;  // Not owned: checked out of the pool for the life of the transaction.
  // BEGIN and its SET LOCALs, not sent yet: they go with the first statement.
  std::vector<std::string> begin_;
  absl::Status first_error_;
  bool commit_sent_ = false;  // ExecAndCommit ran (whatever its outcome).
  bool committed_ = false;    // ... and the server answered COMMIT.
};

struct PoolConfig {
  std::string conninfo;
  int size = 8;
  // How long Exec/InTransaction wait for a free connection before RESOURCE_EXHAUSTED.
  absl::Duration acquire_timeout = absl::Seconds(5);
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TxOptions {
  Isolation isolation = Isolation::kReadCommitted;
  bool read_only = false;
  // Extra attempts after an ABORTED outcome (serialization failure, deadlock).
  int max_retries = 5;
  // If positive, a statement waiting longer than this for a lock fails with ABORTED
  // (SET LOCAL lock_timeout, sent with BEGIN; milliseconds are kept).
  absl::Duration lock_timeout = absl::ZeroDuration();
};

// Counters for metrics.
struct PoolStats {
  int size = 0;    // Configured maximum.
  int open = 0;    // Connections open now (idle + in use).
  int in_use = 0;  // Checked out now.
  int64_t acquire_timeouts = 0;
  int64_t retries = 0;  // Statement or transaction attempts repeated after ABORTED/UNAVAILABLE.
  // Requests answered by the server (each a wait for a reply), counted as connections come back
  // to the pool: what a call costs in round trips, for tests and metrics.
  int64_t round_trips = 0;
};

// A fixed-size, thread-safe pool of connections to one database. Connections are opened lazily up
// to `size`; one that breaks is dropped and replaced on the next checkout. Destroy the pool only
// after every call into it has returned.
class Pool {
 public:
  // Opens one connection to fail fast on a bad conninfo or an unreachable server.
  static absl::StatusOr<std::unique_ptr<Pool>> New(PoolConfig config);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // One statement in its own implicit transaction; repeated (up to 5 attempts) when ABORTED.
  absl::StatusOr<Result> Exec(std::string_view sql, std::span<const Param> params = {});
  absl::StatusOr<Result> Exec(std::string_view sql, std::initializer_list<Param> params) {
    return Exec(sql, std::span<const Param>(params.begin(), params.size()));
  }

  // BEGIN; fn(tx); COMMIT. Rolls back when fn returns an error (or swallowed a database error),
  // and runs fn again, after a short jittered backoff, when the outcome is ABORTED (serialization
  // failure, deadlock) or the connection broke before COMMIT. So fn may run several times: it
  // must touch nothing but the database through `tx` and its own local state. A connection lost
  // during COMMIT is UNKNOWN (the transaction may or may not have committed). Do not nest calls:
  // the inner call would wait for a second connection.
  absl::Status InTransaction(absl::FunctionRef<absl::Status(Tx&)> fn, TxOptions options = {});

  PoolStats Stats() const;

 private:
  class Lease;
  explicit Pool(PoolConfig config) : config_(std::move(config)) {}
  absl::StatusOr<std::unique_ptr<Connection>> Acquire();
  void Release(std::unique_ptr<Connection> conn);
  absl::Status TryTransaction(absl::FunctionRef<absl::Status(Tx&)> fn, const TxOptions& options,
                              bool& retryable);

  const PoolConfig config_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acquire_timeouts_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t retries_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t round_trips_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::db

#endif  // QSIGN_COMMON_DB_PG_H_
