// Versioned SQL migrations for one service schema, applied at start-up by every replica. Safe to
// run concurrently: replicas serialize on an advisory lock and each version is applied once.
#ifndef QSIGN_COMMON_DB_MIGRATE_H_
#define QSIGN_COMMON_DB_MIGRATE_H_

#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/db/pg.h"

namespace qsign::db {

// One step. `sql` may hold several statements; it runs with search_path set to the service's
// schema, so it names its tables unqualified. It must not contain transaction control (COMMIT,
// CREATE INDEX CONCURRENTLY, ...): each migration runs inside one transaction, all or nothing.
// Never edit or renumber a migration once released; add a new one.
struct Migration {
  int version;  // 1, 2, 3, ... strictly increasing.
  std::string_view name;
  std::string_view sql;
};

// Creates `schema` and <schema>.schema_migrations(version, name, applied_at) if missing, then
// applies, in order, each migration not yet recorded there, each in its own transaction.
// INVALID_ARGUMENT for a bad schema name or a malformed list; FAILED_PRECONDITION if the
// database has a version this binary does not know (a newer binary migrated it), or a recorded
// version whose name differs. A failing migration's error keeps its code and names the version.
absl::Status ApplyMigrations(Pool& pool, std::string_view schema,
                             std::span<const Migration> migrations);

// The highest applied version, 0 if the schema has never been migrated.
absl::StatusOr<int> SchemaVersion(Pool& pool, std::string_view schema);

}  // namespace qsign::db

#endif  // QSIGN_COMMON_DB_MIGRATE_H_
