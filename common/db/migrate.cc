#include "common/db/migrate.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::db {
namespace {

// Advisory locks taken with two int4 keys live apart from single-bigint keys (the audit log's);
// the first key says "migrations", the second is the schema.
constexpr char kLockSql[] = "SELECT pg_advisory_xact_lock(1903389543, hashtext($1))";

absl::Status ValidateMigrations(std::span<const Migration> migrations) {
  int previous = 0;
  for (const Migration& m : migrations) {
    if (m.version <= previous) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration versions must be positive and strictly increasing: ", m.version,
                       " follows ", previous));
    }
    if (m.name.empty() || m.sql.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration ", m.version, " needs a name and SQL"));
    }
    previous = m.version;
  }
  return absl::OkStatus();
}

// The database has `version` applied where this binary expected migrations[next].
absl::Status Unexpected(std::string_view schema, std::span<const Migration> migrations, size_t next,
                        int64_t version, std::string_view name) {
  int latest = migrations.empty() ? 0 : migrations.back().version;
  if (version > latest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema ", Av(schema), " is at migration ", version, " (", Av(name),
        "), newer than this binary's latest (", latest, "); refusing to run against it"));
  }
  if (migrations[next].version < version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema ", Av(schema), " lacks migration ", migrations[next].version,
        " although the later migration ", version, " is applied; refusing to apply out of order"));
  }
  return absl::FailedPreconditionError(absl::StrCat("schema ", Av(schema), " has migration ",
                                                    version, " (", Av(name),
                                                    ") applied, which this binary does not know"));
}

// Creates the schema and its bookkeeping table unless they exist. Checks first, because
// CREATE ... IF NOT EXISTS needs the CREATE privilege even when there is nothing to create.
absl::Status Bootstrap(Pool& pool, std::string_view schema) {
  return pool.InTransaction([&](Tx& tx) -> absl::Status {
    if (absl::StatusOr<Result> r = tx.Exec(kLockSql, {Param::Text(schema)}); !r.ok()) {
      return r.status();
    }
    absl::StatusOr<Result> r = tx.Exec(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), "
        "to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL",
        {Param::Text(schema)});
    if (!r.ok()) return r.status();
    absl::StatusOr<bool> has_schema = r->GetBool(0, 0);
    absl::StatusOr<bool> has_table = r->GetBool(0, 1);
    if (!has_schema.ok()) return has_schema.status();
    if (!has_table.ok()) return has_table.status();
    if (!*has_schema) {
      if (absl::Status st = tx.ExecScript(absl::StrCat("CREATE SCHEMA ", Av(schema))); !st.ok()) {
        return st;
      }
    }
    if (!*has_table) {
      return tx.ExecScript(absl::StrCat("CREATE TABLE ", Av(schema),
                                        ".schema_migrations ("
                                        "version integer PRIMARY KEY, "
                                        "name text NOT NULL, "
                                        "applied_at timestamptz NOT NULL DEFAULT now())"));
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::Status ApplyMigrations(Pool& pool, std::string_view schema,
                             std::span<const Migration> migrations) {
  if (absl::Status st = ValidateIdentifier(schema); !st.ok()) return st;
  if (absl::Status st = ValidateMigrations(migrations); !st.ok()) return st;
  if (absl::Status st = Bootstrap(pool, schema); !st.ok()) return st;

  const std::string list_sql =
      absl::StrCat("SELECT version, name FROM ", Av(schema), ".schema_migrations ORDER BY version");
  const std::string record_sql = absl::StrCat("INSERT INTO ", Av(schema),
                                              ".schema_migrations (version, name) VALUES ($1, $2)");
  const std::string search_path_sql = absl::StrCat("SET LOCAL search_path TO ", Av(schema));

  // One transaction per migration; each re-reads the applied versions under the lock, so
  // replicas racing here apply every version exactly once between them.
  for (;;) {
    bool done = false;
    const Migration* applying = nullptr;
    absl::Status st = pool.InTransaction([&](Tx& tx) -> absl::Status {
      applying = nullptr;
      if (absl::StatusOr<Result> r = tx.Exec(kLockSql, {Param::Text(schema)}); !r.ok()) {
        return r.status();
      }
      absl::StatusOr<Result> applied = tx.Exec(list_sql);
      if (!applied.ok()) return applied.status();
      size_t next = 0;  // Index in `migrations` of the next one the database should have.
      for (int row = 0; row < applied->rows(); ++row) {
        absl::StatusOr<int64_t> version = applied->GetInt64(row, 0);
        if (!version.ok()) return version.status();
        std::string_view name = applied->Get(row, 1);
        if (next >= migrations.size() || migrations[next].version != *version) {
          return Unexpected(schema, migrations, next, *version, name);
        }
        if (migrations[next].name != name) {
          return absl::FailedPreconditionError(absl::StrCat(
              "schema ", Av(schema), " migration ", *version, " was applied as \"", Av(name),
              "\" but this binary calls it \"", Av(migrations[next].name), "\""));
        }
        ++next;
      }
      if (next == migrations.size()) {
        done = true;
        return absl::OkStatus();
      }
      applying = &migrations[next];
      if (absl::Status st = tx.ExecScript(search_path_sql); !st.ok()) return st;
      if (absl::Status st = tx.ExecScript(applying->sql); !st.ok()) return st;
      absl::StatusOr<Result> r =
          tx.Exec(record_sql, {Param::Int(applying->version), Param::Text(applying->name)});
      return r.status();
    });
    if (!st.ok()) {
      if (applying == nullptr) return st;
      return absl::Status(
          st.code(), absl::StrCat("schema ", Av(schema), " migration ", applying->version, " (",
                                  Av(applying->name), ") failed: ", st.message()));
    }
    if (done) return absl::OkStatus();
  }
}

absl::StatusOr<int> SchemaVersion(Pool& pool, std::string_view schema) {
  if (absl::Status st = ValidateIdentifier(schema); !st.ok()) return st;
  int version = 0;
  absl::Status st = pool.InTransaction(
      [&](Tx& tx) -> absl::Status {
        absl::StatusOr<Result> exists =
            tx.Exec("SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL",
                    {Param::Text(schema)});
        if (!exists.ok()) return exists.status();
        absl::StatusOr<bool> has_table = exists->GetBool(0, 0);
        if (!has_table.ok()) return has_table.status();
        if (!*has_table) return absl::OkStatus();
        absl::StatusOr<Result> r = tx.Exec(absl::StrCat("SELECT coalesce(max(version), 0) FROM ",
                                                        Av(schema), ".schema_migrations"));
        if (!r.ok()) return r.status();
        absl::StatusOr<int64_t> v = r->GetInt64(0, 0);
        if (!v.ok()) return v.status();
        version = static_cast<int>(*v);
        return absl::OkStatus();
      },
      TxOptions{.isolation = Isolation::kRepeatableRead, .read_only = true});
  if (!st.ok()) return st;
  return version;
}

}  // namespace qsign::db
