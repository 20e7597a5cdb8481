#include "services/lifecycle/schema.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/db/audit.h"
#include "common/db/migrate.h"
#include "common/strings.h"

namespace qsign::lifecycle {
namespace {

constexpr char kV1[] = R"sql(
-- The CA hierarchy: one row per CA or OCSP responder certificate, its key in the HSM.
CREATE TABLE cas (
  name            text PRIMARY KEY,
  key_id          text NOT NULL UNIQUE,
  key_type        text NOT NULL,
  issuer          text NOT NULL,
  certificate_der bytea NOT NULL,
  serial_hex      text NOT NULL,
  not_after       timestamptz NOT NULL,
  next_crl_number bigint NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);

-- Every CRL issued, per CA; the newest (highest number) is served.
CREATE TABLE crls (
  ca_name     text NOT NULL REFERENCES cas (name),
  crl_number  bigint NOT NULL,
  this_update timestamptz NOT NULL,
  next_update timestamptz NOT NULL,
  der         bytea NOT NULL,
  PRIMARY KEY (ca_name, crl_number)
);
)sql";

}  // namespace

absl::Status MigrateLifecycleSchema(db::Pool& pool) {
  static const std::string v1 = absl::StrCat(kV1, Av(db::AuditTableSql()));
  const db::Migration migrations[] = {{1, "CAs, CRLs, audit log", v1}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

}  // namespace qsign::lifecycle
