#include "common/db/pg.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/strings.h"

namespace qsign::db {
namespace {

// Type OIDs from the server's catalog/pg_type.dat; they never change.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTimestamptzOid = 1184;

// Session settings the text-format conventions in pg.h rely on.
constexpr char kSessionSetup[] =
    "SET client_min_messages = warning; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
    "SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'";

// Beyond this many distinct statements a connection runs new ones unprepared.
constexpr size_t kMaxCachedStatements = 1000;
// Attempts for Pool::Exec when a statement is ABORTED (deadlock, stale cached plan).
constexpr int kExecAttempts = 5;

[[noreturn]] void Die(std::string_view msg) {
  std::fprintf(stderr, "qsign::db fatal: %.*s\n", static_cast<int>(msg.size()), msg.data());
  std::abort();
}

std::string TrimMessage(const char* msg) {
  if (msg == nullptr) return "";
  return std::string(absl::StripTrailingAsciiWhitespace(msg));
}

void IgnoreNotice(void*, const char*) {}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads exactly `n` digits at `s[*pos]`.
bool ReadDigits(std::string_view s, size_t* pos, size_t n, int64_t* out) {
  if (*pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

// Parses timestamptz output under DateStyle=ISO: "2024-01-02 03:04:05.123456+00" (the offset may
// be +hh, +hh:mm or +hh:mm:ss), "infinity" or "-infinity". BC dates are rejected.
std::optional<absl::Time> ParseTimestamptz(std::string_view s) {
  if (s == "infinity") return absl::InfiniteFuture();
  if (s == "-infinity") return absl::InfinitePast();
  size_t pos = 0;
  size_t year_digits = 0;
  while (year_digits < s.size() && s[year_digits] >= '0' && s[year_digits] <= '9') ++year_digits;
  if (year_digits < 4 || year_digits > 6) return std::nullopt;
  int64_t year, month, day, hour, minute, second;
  if (!ReadDigits(s, &pos, year_digits, &year) || !Expect(s, &pos, '-') ||
      !ReadDigits(s, &pos, 2, &month) || !Expect(s, &pos, '-') || !ReadDigits(s, &pos, 2, &day) ||
      !Expect(s, &pos, ' ') || !ReadDigits(s, &pos, 2, &hour) || !Expect(s, &pos, ':') ||
      !ReadDigits(s, &pos, 2, &minute) || !Expect(s, &pos, ':') ||
      !ReadDigits(s, &pos, 2, &second)) {
    return std::nullopt;
  }
  int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++digits > 6) return std::nullopt;
      micros = micros * 10 + (s[pos++] - '0');
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 6; ++digits) micros *= 10;
  }
  if (pos >= s.size() || (s[pos] != '+' && s[pos] != '-')) return std::nullopt;
  int sign = s[pos++] == '-' ? -1 : 1;
  int64_t off_h = 0, off_m = 0, off_s = 0;
  if (!ReadDigits(s, &pos, 2, &off_h)) return std::nullopt;
  if (pos < s.size() && (!Expect(s, &pos, ':') || !ReadDigits(s, &pos, 2, &off_m))) {
    return std::nullopt;
  }
  if (pos < s.size() && (!Expect(s, &pos, ':') || !ReadDigits(s, &pos, 2, &off_s))) {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.month() != month || civil.day() != day || civil.hour() != hour ||
      civil.minute() != minute || civil.second() != second) {
    return std::nullopt;
  }
  absl::Duration offset = sign * (absl::Hours(off_h) + absl::Minutes(off_m) + absl::Seconds(off_s));
  return absl::FromCivil(civil, absl::UTCTimeZone()) - offset + absl::Microseconds(micros);
}

std::string FormatTimestamptz(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "infinity";
  if (t == absl::InfinitePast()) return "-infinity";
  absl::Time micros = absl::FromUnixMicros(absl::ToUnixMicros(t));
  return absl::FormatTime("%Y-%m-%d %H:%M:%E6S+00", micros, absl::UTCTimeZone());
}

absl::Duration Backoff(int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  int64_t base_us = std::min<int64_t>(int64_t{2000} << std::min(attempt, 10), 200000);
  std::uniform_int_distribution<int64_t> jitter(base_us / 2, base_us + base_us / 2);
  return absl::Microseconds(jitter(rng));
}

const char* BeginSql(const TxOptions& options) {
  switch (options.isolation) {
    case Isolation::kReadCommitted:
      return options.read_only ? "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
                               : "BEGIN ISOLATION LEVEL READ COMMITTED";
    case Isolation::kRepeatableRead:
      return options.read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                               : "BEGIN ISOLATION LEVEL REPEATABLE READ";
    case Isolation::kSerializable:
      return options.read_only ? "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
                               : "BEGIN ISOLATION LEVEL SERIALIZABLE";
  }
  Die("unknown isolation level");
}

// BEGIN and the transaction's SET LOCALs, one statement each (they go out in a pipeline).
std::vector<std::string> BeginStatements(const TxOptions& options) {
  std::vector<std::string> out = {BeginSql(options)};
  if (options.lock_timeout > absl::ZeroDuration()) {
    const int64_t ms = std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(options.lock_timeout, absl::Milliseconds(1))));
    out.push_back(absl::StrCat("SET LOCAL lock_timeout = ", ms));
  }
  return out;
}

}  // namespace

absl::Status SqlstateToStatus(std::string_view sqlstate, std::string_view message) {
  std::string msg = absl::StrCat(Av(message), " [SQLSTATE ", Av(sqlstate), "]");
  auto cls = [&](std::string_view prefix) { return sqlstate.starts_with(prefix); };
  if (sqlstate == "23505") return absl::AlreadyExistsError(msg);
  if (cls("23")) return absl::FailedPreconditionError(msg);
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03") {
    return absl::AbortedError(msg);
  }
  if (cls("08") || cls("57P0")) return absl::UnavailableError(msg);
  if (sqlstate == "57014") return absl::DeadlineExceededError(msg);
  if (cls("53")) return absl::ResourceExhaustedError(msg);
  if (cls("22")) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

absl::Status ValidateIdentifier(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && !name.starts_with("pg_") &&
            !(name[0] >= '0' && name[0] <= '9');
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) ok = false;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid SQL identifier \"", Av(name),
                   "\": must match [a-z_][a-z0-9_]*, be at most 63 bytes and not start with pg_"));
}

// ---- Result ----

int Result::rows() const { return PQntuples(res_.get()); }
int Result::columns() const { return PQnfields(res_.get()); }

int64_t Result::affected_rows() const {
  int64_t n = 0;
  if (!absl::SimpleAtoi(PQcmdTuples(res_.get()), &n)) return 0;
  return n;
}

void Result::CheckIndex(int row, int col) const {
  if (row < 0 || row >= rows() || col < 0 || col >= columns()) {
    Die(absl::StrCat("Result index (", row, ", ", col, ") out of range (", rows(), " rows, ",
                     columns(), " columns)"));
  }
}

absl::Status Result::ValueError(int row, int col, std::string_view what) const {
  const char* name = PQfname(res_.get(), col);
  return absl::InternalError(
      absl::StrCat("column ", name ? name : "?", " (row ", row, "): ", Av(what)));
}

std::string_view Result::Get(int row, int col) const {
  CheckIndex(row, col);
  return std::string_view(PQgetvalue(res_.get(), row, col),
                          static_cast<size_t>(PQgetlength(res_.get(), row, col)));
}

bool Result::IsNull(int row, int col) const {
  CheckIndex(row, col);
  return PQgetisnull(res_.get(), row, col) != 0;
}

absl::StatusOr<int64_t> Result::GetInt64(int row, int col) const {
  if (IsNull(row, col)) return ValueError(row, col, "is NULL, expected an integer");
  int64_t v;
  if (!absl::SimpleAtoi(Av(Get(row, col)), &v)) {
    return ValueError(row, col, "is not a 64-bit integer");
  }
  return v;
}

absl::StatusOr<bool> Result::GetBool(int row, int col) const {
  if (IsNull(row, col)) return ValueError(row, col, "is NULL, expected a boolean");
  if (PQftype(res_.get(), col) != kBoolOid) return ValueError(row, col, "is not a boolean");
  std::string_view v = Get(row, col);
  if (v == "t") return true;
  if (v == "f") return false;
  return ValueError(row, col, "is not a boolean");
}

absl::StatusOr<std::string> Result::GetBytes(int row, int col) const {
  if (IsNull(row, col)) return ValueError(row, col, "is NULL, expected bytea");
  if (PQftype(res_.get(), col) != kByteaOid) return ValueError(row, col, "is not bytea");
  std::string_view v = Get(row, col);
  if (!v.starts_with("\\x") || v.size() % 2 != 0) {
    return ValueError(row, col, "is not hex-format bytea (bytea_output must be hex)");
  }
  v.remove_prefix(2);
  std::string out(v.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(v[2 * i]);
    int lo = HexValue(v[2 * i + 1]);
    if (hi < 0 || lo < 0) return ValueError(row, col, "has an invalid hex digit");
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

absl::StatusOr<absl::Time> Result::GetTime(int row, int col) const {
  if (IsNull(row, col)) return ValueError(row, col, "is NULL, expected a time");
  Oid type = PQftype(res_.get(), col);
  if (type == kInt8Oid || type == kInt4Oid || type == kInt2Oid) {
    absl::StatusOr<int64_t> micros = GetInt64(row, col);
    if (!micros.ok()) return micros.status();
    return absl::FromUnixMicros(*micros);
  }
  if (type != kTimestamptzOid) {
    return ValueError(row, col, "is neither timestamptz nor bigint microseconds");
  }
  std::optional<absl::Time> t = ParseTimestamptz(Get(row, col));
  if (!t) {
    return ValueError(row, col,
                      absl::StrCat("cannot parse timestamptz \"", Av(Get(row, col)), "\""));
  }
  return *t;
}

// ---- Param ----

Param Param::Text(std::string_view value) { return Param(0, false, false, std::string(value)); }
Param Param::Bytes(std::string_view raw) { return Param(kByteaOid, true, false, std::string(raw)); }
Param Param::Int(int64_t value) { return Param(kInt8Oid, false, false, absl::StrCat(value)); }
Param Param::Bool(bool value) { return Param(kBoolOid, false, false, value ? "t" : "f"); }
Param Param::Time(absl::Time value) {
  return Param(kTimestamptzOid, false, false, FormatTimestamptz(value));
}
Param Param::Null() { return Param(0, false, true, ""); }

// ---- Connection ----

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(std::string_view conninfo) {
  std::string info(conninfo);
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(info.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err ? TrimMessage(err) : "out of memory";
    PQfreemem(err);
    return absl::InvalidArgumentError(absl::StrCat("invalid database conninfo: ", msg));
  }
  PQconninfoFree(opts);

  PgConnPtr conn(PQconnectdb(info.c_str()));
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to the database: ", TrimMessage(PQerrorMessage(conn.get()))));
  }
  // Notices (e.g. "schema already exists, skipping") would go to stderr.
  PQsetNoticeProcessor(conn.get(), &IgnoreNotice, nullptr);
  if (PQsetClientEncoding(conn.get(), "UTF8") != 0) {
    return absl::InternalError("cannot set client_encoding to UTF8");
  }
  std::unique_ptr<Connection> c(new Connection(std::move(conn)));
  if (absl::Status st = c->ExecScript(kSessionSetup); !st.ok()) return st;
  return c;
}

absl::Status Connection::ErrorStatus(const PGresult* res) const {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state != nullptr) {
    const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return SqlstateToStatus(state, primary ? primary : "database error");
  }
  std::string msg = TrimMessage(PQerrorMessage(conn_.get()));
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("database connection lost: ", msg));
  }
  return absl::InternalError(absl::StrCat("database error: ", msg));
}

absl::StatusOr<Result> Connection::Finish(PgResultPtr res, bool cached_statement,
                                          const std::string& key) {
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    return Result(std::move(res));
  }
  if (st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR && st != PGRES_BAD_RESPONSE) {
    return absl::InternalError(
        absl::StrCat("unsupported result status ", PQresStatus(st), " (COPY is not supported)"));
  }
  absl::Status error = ErrorStatus(res.get());
  if (cached_statement && res) {
    // A schema change (a migration on another connection) invalidated the prepared statement's
    // result type. Forget it; the retry prepares it again.
    const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    const char* func = PQresultErrorField(res.get(), PG_DIAG_SOURCE_FUNCTION);
    if (state != nullptr && std::string_view(state) == "0A000" && func != nullptr &&
        std::string_view(func) == "RevalidateCachedQuery") {
      statements_.erase(key);
      return absl::AbortedError(error.message());
    }
  }
  return error;
}

struct Connection::Bound {
  std::string sql_z;  // libpq wants it NUL-terminated.
  // The cache key: SQL text, '\0', the parameter type OIDs.
  std::string key;
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  int n() const { return static_cast<int>(types.size()); }
};

absl::Status Connection::Bind(std::string_view sql, std::span<const Param> params, Bound* b) {
  b->types.resize(params.size());
  b->values.resize(params.size());
  b->lengths.resize(params.size());
  b->formats.resize(params.size());
  b->key.assign(sql);
  b->key.push_back('\0');
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    if (!p.is_binary() && p.value().find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("SQL parameter $", i + 1, " contains a NUL byte; use Param::Bytes"));
    }
    b->types[i] = p.type();
    b->values[i] = p.is_null() ? nullptr : p.value().data();
    b->lengths[i] = static_cast<int>(p.value().size());
    b->formats[i] = p.is_binary() ? 1 : 0;
    b->key.append(reinterpret_cast<const char*>(&b->types[i]), sizeof(Oid));
  }
  b->sql_z.assign(sql);
  return absl::OkStatus();
}

absl::StatusOr<Result> Connection::Exec(std::string_view sql, std::span<const Param> params) {
  return ExecAfter({}, sql, params);
}

absl::StatusOr<Result> Connection::ExecAfter(std::span<const std::string> prefix,
                                             std::string_view sql, std::span<const Param> params) {
  return ExecInPipeline(prefix, sql, params, /*commit=*/false);
}

absl::StatusOr<Result> Connection::ExecAfterThenCommit(std::span<const std::string> prefix,
                                                       std::string_view sql,
                                                       std::span<const Param> params) {
  return ExecInPipeline(prefix, sql, params, /*commit=*/true);
}

absl::StatusOr<Result> Connection::ExecInPipeline(std::span<const std::string> prefix,
                                                  std::string_view sql,
                                                  std::span<const Param> params, bool commit) {
  if (broken_) return absl::UnavailableError("database connection lost in a pipeline");
  Bound b;
  if (absl::Status st = Bind(sql, params, &b); !st.ok()) return st;

  auto it = statements_.find(b.key);
  if (it == statements_.end() && statements_.size() < kMaxCachedStatements) {
    // Prepared and described once per connection (a new connection starts with none).
    std::string name = absl::StrCat("qsign_", next_statement_++);
    ++round_trips_;
    PgResultPtr prep(PQprepare(conn_.get(), name.c_str(), b.sql_z.c_str(), b.n(), b.types.data()));
    if (prep == nullptr || PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
      return ErrorStatus(prep.get());
    }
    ++round_trips_;
    PgResultPtr desc(PQdescribePrepared(conn_.get(), name.c_str()));
    if (desc == nullptr || PQresultStatus(desc.get()) != PGRES_COMMAND_OK) {
      return ErrorStatus(desc.get());
    }
    it = statements_.emplace(b.key, Prepared{std::move(name), PQnparams(desc.get())}).first;
  }
  if (it != statements_.end()) {
    if (it->second.params != b.n()) {
      // The server infers types for placeholders beyond the ones given, then refuses to bind.
      return absl::InternalError(absl::StrCat("SQL statement has ", it->second.params,
                                              " parameters ($1..$", it->second.params, "), ", b.n(),
                                              " given: ", Av(sql.substr(0, 80))));
    }
    if (!prefix.empty() || commit) return ExecPipelined(prefix, b, &it->second.name, commit);
    ++round_trips_;
    PgResultPtr res(PQexecPrepared(conn_.get(), it->second.name.c_str(), b.n(), b.values.data(),
                                   b.lengths.data(), b.formats.data(), /*resultFormat=*/0));
    return Finish(std::move(res), /*cached_statement=*/true, b.key);
  }
  if (!prefix.empty() || commit) return ExecPipelined(prefix, b, nullptr, commit);
  ++round_trips_;
  PgResultPtr res(PQexecParams(conn_.get(), b.sql_z.c_str(), b.n(), b.types.data(), b.values.data(),
                               b.lengths.data(), b.formats.data(),
                               /*resultFormat=*/0));
  return Finish(std::move(res), /*cached_statement=*/false, b.key);
}

absl::StatusOr<Result> Connection::ExecPipelined(std::span<const std::string> prefix,
                                                 const Bound& b, const std::string* name,
                                                 bool commit) {
  PGconn* c = conn_.get();
  if (PQenterPipelineMode(c) != 1) return ErrorStatus(nullptr);
  bool sent = true;
  for (const std::string& sql : prefix) {
    sent = sent && PQsendQueryParams(c, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr,
                                     /*resultFormat=*/0) == 1;
  }
  if (sent) {
    sent = name != nullptr
               ? PQsendQueryPrepared(c, name->c_str(), b.n(), b.values.data(), b.lengths.data(),
                                     b.formats.data(), /*resultFormat=*/0) == 1
               : PQsendQueryParams(c, b.sql_z.c_str(), b.n(), b.types.data(), b.values.data(),
                                   b.lengths.data(), b.formats.data(), /*resultFormat=*/0) == 1;
  }
  if (sent && commit) {
    sent = PQsendQueryParams(c, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr,
                             /*resultFormat=*/0) == 1;
  }
  // The Sync ends the pipeline and flushes it: one write, one wait for the answers.
  if (sent) sent = PQpipelineSync(c) == 1;
  ++round_trips_;
  // Each query answers one result (its rows, its error, or PGRES_PIPELINE_ABORTED after an
  // earlier error) and then NULL; the Sync answers PGRES_PIPELINE_SYNC.
  const size_t queries = prefix.size() + 1 + (commit ? 1 : 0);
  std::vector<PgResultPtr> results;
  bool in_step = sent;
  while (in_step && results.size() < queries) {
    PgResultPtr r(PQgetResult(c));
    if (r == nullptr) break;
    int extra = 0;
    while (PGresult* more = PQgetResult(c)) {
      PQclear(more);
      if (++extra > 4) break;
    }
    in_step = extra <= 4;
    results.push_back(std::move(r));
  }
  if (in_step && results.size() == queries) {
    PgResultPtr sync(PQgetResult(c));
    in_step = sync != nullptr && PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC &&
              PQexitPipelineMode(c) == 1;
  }
  if (!in_step || results.size() != queries) {
    // Whatever went wrong (usually a lost connection), libpq is not where this code can go on.
    broken_ = true;
    absl::Status error = ErrorStatus(results.empty() ? nullptr : results.back().get());
    if (error.code() != absl::StatusCode::kUnavailable) {
      error = absl::UnavailableError(absl::StrCat("database pipeline failed: ", error.message()));
    }
    return error;
  }
  // The first error wins: the statements after it were skipped (PGRES_PIPELINE_ABORTED).
  for (size_t i = 0; i < prefix.size(); ++i) {
    absl::StatusOr<Result> r = Finish(std::move(results[i]), /*cached_statement=*/false, "");
    if (!r.ok()) return r.status();
  }
  absl::StatusOr<Result> main =
      Finish(std::move(results[prefix.size()]), /*cached_statement=*/name != nullptr, b.key);
  if (!main.ok() || !commit) return main;
  // COMMIT of a transaction that had failed before answers "ROLLBACK", not an error.
  const std::string tag = PQcmdStatus(results.back().get());
  absl::StatusOr<Result> committed =
      Finish(std::move(results.back()), /*cached_statement=*/false, "");
  if (!committed.ok()) return committed.status();
  if (tag != "COMMIT") {
    return absl::AbortedError(absl::StrCat("COMMIT answered ", tag, ": nothing was committed"));
  }
  return main;
}

absl::Status Connection::ExecScript(std::string_view sql) {
  if (broken_) return absl::UnavailableError("database connection lost in a pipeline");
  std::string sql_z(sql);
  ++round_trips_;
  PgResultPtr res(PQexec(conn_.get(), sql_z.c_str()));
  return Finish(std::move(res), /*cached_statement=*/false, "").status();
}

bool Connection::Healthy() {
  // The socket is non-blocking inside libpq, so these reads never wait. A server that ended the
  // session sent a FATAL message and then EOF: the first read takes the message, the second
  // sees the EOF.
  if (broken_) return false;
  for (int i = 0; i < 2; ++i) {
    if (PQstatus(conn_.get()) != CONNECTION_OK || PQconsumeInput(conn_.get()) == 0) return false;
  }
  return PQstatus(conn_.get()) == CONNECTION_OK;
}

PGTransactionStatusType Connection::transaction_status() const {
  if (broken_) return PQTRANS_UNKNOWN;
  return PQtransactionStatus(conn_.get());
}

// ---- Tx ----

void Tx::Record(const absl::Status& status) {
  if (!status.ok() && first_error_.ok()) first_error_ = status;
}

absl::Status Tx::RequireOpen() const {
  if (!commit_sent_) return absl::OkStatus();
  return absl::FailedPreconditionError("the transaction ended with ExecAndCommit");
}

absl::StatusOr<Result> Tx::Exec(std::string_view sql, std::span<const Param> params) {
  if (absl::Status s = RequireOpen(); !s.ok()) {
    Record(s);
    return s;
  }
  absl::StatusOr<Result> res =
      begin_.empty() ? conn_->Exec(sql, params) : conn_->ExecAfter(begin_, sql, params);
  // BEGIN went out unless the statement failed before anything was sent.
  if (!begin_.empty() && conn_->transaction_status() != PQTRANS_IDLE) begin_.clear();
  if (!res.ok()) Record(res.status());
  return res;
}

absl::StatusOr<Result> Tx::ExecAndCommit(std::string_view sql, std::span<const Param> params) {
  if (absl::Status s = RequireOpen(); !s.ok()) {
    Record(s);
    return s;
  }
  commit_sent_ = true;
  // A transaction that failed before is not committed: nothing more is sent.
  if (!first_error_.ok()) return first_error_;
  absl::StatusOr<Result> res = conn_->ExecAfterThenCommit(begin_, sql, params);
  if (res.ok()) {
    committed_ = true;
    begin_.clear();
    return res;
  }
  if (conn_->transaction_status() == PQTRANS_UNKNOWN) {
    res = absl::UnknownError(absl::StrCat(
        "connection lost during COMMIT; the transaction may or may not have committed: ",
        res.status().message()));
  }
  Record(res.status());
  return res;
}

absl::Status Tx::ExecScript(std::string_view sql) {
  if (absl::Status s = RequireOpen(); !s.ok()) {
    Record(s);
    return s;
  }
  absl::Status st =
      begin_.empty() ? conn_->ExecScript(sql)
                     : conn_->ExecScript(absl::StrCat(absl::StrJoin(begin_, "; "), "; ", Av(sql)));
  if (!begin_.empty() && conn_->transaction_status() != PQTRANS_IDLE) begin_.clear();
  Record(st);
  return st;
}

// ---- Pool ----

// A checked-out connection, returned to the pool when this goes away.
class Pool::Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
  ~Lease() { pool_->Release(std::move(conn_)); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Connection& conn() { return *conn_; }

 private:
  Pool* pool_;  // Not owned; outlives the lease.
  std::unique_ptr<Connection> conn_;
};

absl::StatusOr<std::unique_ptr<Pool>> Pool::New(PoolConfig config) {
  if (config.size < 1) return absl::InvalidArgumentError("pool size must be at least 1");
  if (config.acquire_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("pool acquire_timeout must be positive");
  }
  absl::StatusOr<std::unique_ptr<Connection>> first = Connection::Open(config.conninfo);
  if (!first.ok()) return first.status();
  std::unique_ptr<Pool> pool(new Pool(std::move(config)));
  absl::MutexLock lock(&pool->mu_);
  pool->idle_.push_back(*std::move(first));
  pool->open_ = 1;
  return pool;
}

Pool::~Pool() {
  absl::MutexLock lock(&mu_);
  if (in_use_ != 0) Die("Pool destroyed while connections are checked out");
  idle_.clear();
}

absl::StatusOr<std::unique_ptr<Connection>> Pool::Acquire() {
  const absl::Time deadline = absl::Now() + config_.acquire_timeout;
  std::unique_ptr<Connection> conn;
  {
    absl::MutexLock lock(&mu_);
    while (idle_.empty() && open_ >= config_.size) {
      if (cv_.WaitWithDeadline(&mu_, deadline) && idle_.empty() && open_ >= config_.size) {
        ++acquire_timeouts_;
        return absl::ResourceExhaustedError(absl::StrCat(
            "no free database connection after ", absl::FormatDuration(config_.acquire_timeout),
            " (all ", config_.size, " in use)"));
      }
    }
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;  // Reserve the slot; connect outside the lock.
    }
    ++in_use_;
  }
  // A connection the server closed while idle (restart, failover) is replaced in its slot.
  if (conn != nullptr && !conn->Healthy()) conn.reset();
  if (conn == nullptr) {
    absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(config_.conninfo);
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      --in_use_;
      cv_.Signal();
      return opened.status();
    }
    conn = *std::move(opened);
  }
  return conn;
}

void Pool::Release(std::unique_ptr<Connection> conn) {
  const int64_t round_trips = conn->TakeRoundTrips();
  // Anything but an idle, healthy connection (broken, or left inside a transaction) is closed.
  if (conn->transaction_status() != PQTRANS_IDLE) conn.reset();
  absl::MutexLock lock(&mu_);
  round_trips_ += round_trips;
  --in_use_;
  if (conn != nullptr) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  cv_.Signal();
}

absl::StatusOr<Result> Pool::Exec(std::string_view sql, std::span<const Param> params) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<std::unique_ptr<Connection>> conn = Acquire();
    if (!conn.ok()) return conn.status();
    absl::StatusOr<Result> res = [&] {
      Lease lease(this, *std::move(conn));
      return lease.conn().Exec(sql, params);
    }();
    // An autocommit statement that was ABORTED was rolled back: running it again is safe.
    if (res.ok() || res.status().code() != absl::StatusCode::kAborted || attempt >= kExecAttempts) {
      return res;
    }
    {
      absl::MutexLock lock(&mu_);
      ++retries_;
    }
    absl::SleepFor(Backoff(attempt - 1));
  }
}

absl::Status Pool::TryTransaction(absl::FunctionRef<absl::Status(Tx&)> fn, const TxOptions& options,
                                  bool& retryable) {
  retryable = false;
  absl::StatusOr<std::unique_ptr<Connection>> acquired = Acquire();
  if (!acquired.ok()) return acquired.status();
  Lease lease(this, *std::move(acquired));
  Connection& conn = lease.conn();

  // BEGIN goes with the first statement (a broken connection then fails that one: retried).
  Tx tx(&conn, BeginStatements(options));
  absl::Status st = fn(tx);
  if (st.ok() && !tx.first_error_.ok()) st = tx.first_error_;
  if (tx.commit_sent_) {
    // ExecAndCommit ended the transaction: committed, or rolled back by the server (the COMMIT
    // failed), or still open and failed (its statement failed, or it was refused before sending).
    const PGTransactionStatusType open = conn.transaction_status();
    if (open == PQTRANS_INTRANS || open == PQTRANS_INERROR) {
      conn.ExecScript("ROLLBACK").IgnoreError();
    }
    if (tx.committed_) return st;
    retryable = st.code() == absl::StatusCode::kAborted;
    return st;
  }
  if (!tx.begin_.empty()) {
    // Nothing reached the server: nothing to commit or roll back.
    retryable = st.code() == absl::StatusCode::kAborted;
    return st;
  }
  if (st.ok() && conn.transaction_status() != PQTRANS_INTRANS) {
    st = absl::InternalError("the transaction was ended or failed inside InTransaction");
  }
  if (!st.ok()) {
    bool lost = conn.transaction_status() == PQTRANS_UNKNOWN;
    if (!lost) conn.ExecScript("ROLLBACK").IgnoreError();
    // The server rolled back a transaction whose connection broke before COMMIT.
    retryable = st.code() == absl::StatusCode::kAborted ||
                (st.code() == absl::StatusCode::kUnavailable && lost);
    return st;
  }
  absl::Status commit = conn.ExecScript("COMMIT");
  if (commit.ok()) return commit;
  if (conn.transaction_status() == PQTRANS_UNKNOWN) {
    return absl::UnknownError(absl::StrCat(
        "connection lost during COMMIT; the transaction may or may not have committed: ",
        commit.message()));
  }
  retryable = commit.code() == absl::StatusCode::kAborted;
  return commit;
}

absl::Status Pool::InTransaction(absl::FunctionRef<absl::Status(Tx&)> fn, TxOptions options) {
  for (int attempt = 0;; ++attempt) {
    bool retryable = false;
    absl::Status st = TryTransaction(fn, options, retryable);
    if (st.ok() || !retryable || attempt >= options.max_retries) return st;
    {
      absl::MutexLock lock(&mu_);
      ++retries_;
    }
    absl::SleepFor(Backoff(attempt));
  }
}

PoolStats Pool::Stats() const {
  absl::MutexLock lock(&mu_);
  PoolStats s;
  s.size = config_.size;
  s.open = open_;
  s.in_use = in_use_;
  s.acquire_timeouts = acquire_timeouts_;
  s.retries = retries_;
  s.round_trips = round_trips_;
  return s;
}

}  // namespace qsign::db
