// deploy/postgres/roles.sql against a real PostgreSQL and the services' real migrations: each
// service migrates its own schema as its own role, writes its audit log, and can neither rewrite
// nor remove that log nor touch another service's schema.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/db/audit.h"
#include "common/db/migrate.h"
#include "common/db/pg.h"
#include "common/db/testing/pg_test.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"
#include "services/consent/consent_store.h"
#include "services/identity/identity_store.h"
#include "services/lifecycle/schema.h"
#include "services/signer/signer_store.h"
#include "services/tsa/tsa_store.h"
#include "services/web/sessions.h"
#include "tools/audit/audit_tool.h"

namespace qsign {
namespace {

using db::Pool;

constexpr const char* kServices[] = {"identity", "consent", "lifecycle", "signer", "tsa"};

// PostgreSQL refused for lack of privilege (insufficient_privilege, also what roles.sql's event
// triggers raise), as opposed to any other failure.
::testing::AssertionResult Refused(const absl::Status& status) {
  if (absl::StrContains(status.message(), "[SQLSTATE 42501]")) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "expected SQLSTATE 42501, got " << status;
}

std::string ReadRolesSql() {
  std::ifstream in(QSIGN_ROLES_SQL);
  EXPECT_TRUE(in.is_open()) << "cannot read " << QSIGN_ROLES_SQL;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status Migrate(std::string_view service, Pool& pool) {
  if (service == "identity") return identity::MigrateIdentitySchema(pool);
  if (service == "consent") return consent::MigrateConsentSchema(pool);
  if (service == "lifecycle") return lifecycle::MigrateLifecycleSchema(pool);
  if (service == "tsa") return tsa::MigrateTsaSchema(pool);
  return signer::MigrateSignerSchema(pool);
}

class RolesSqlTest : public db::testing::PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    ASSERT_TRUE(
        pool().InTransaction([](db::Tx& tx) { return tx.ExecScript(ReadRolesSql()); }).ok());
  }

  // A pool on this test's database, logged in as `role` (the test server trusts every role).
  std::unique_ptr<Pool> PoolAs(const std::string& role) {
    const std::string conninfo =
        absl::StrReplaceAll(database().conninfo, {{"user=postgres", absl::StrCat("user=", role)}});
    auto pool = Pool::New({.conninfo = conninfo, .size = 2});
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? *std::move(pool) : nullptr;
  }

  static db::AuditEvent Event(std::string_view action) {
    return {.actor = "roles_test",
            .action = std::string(action),
            .target = "t",
            .client_address = "127.0.0.1",
            .outcome = "ok",
            .details = ""};
  }

  static absl::Status Append(Pool& pool, std::string_view schema, std::string_view action) {
    return pool.InTransaction(
        [&](db::Tx& tx) { return db::AppendAudit(tx, schema, Event(action), absl::Now()); });
  }

  // The names of the indexes on `qualified_table`, sorted.
  std::vector<std::string> Indexes(std::string_view qualified_table) {
    auto r = pool().Exec(
        "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass",
        {db::Param::Text(qualified_table)});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->rows() != 1) return {};
    return absl::StrSplit(std::string(r->Get(0, 0)), ' ', absl::SkipEmpty());
  }

  std::string Owner(std::string_view qualified_table) {
    auto r = pool().Exec("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = $1::regclass",
                         {db::Param::Text(qualified_table)});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->rows() == 1 ? std::string(r->Get(0, 0)) : "";
  }
};

TEST_F(RolesSqlTest, EachServiceMigratesItsSchemaAndAppendsToAnAuditLogItCannotRewrite) {
  for (const char* service : kServices) {
    SCOPED_TRACE(service);
    std::unique_ptr<Pool> as_service = PoolAs(service);
    ASSERT_NE(as_service, nullptr);
    ASSERT_TRUE(Migrate(service, *as_service).ok()) << Migrate(service, *as_service);
    // A restarted replica migrates again: nothing to do, no error.
    ASSERT_TRUE(Migrate(service, *as_service).ok());

    const std::string log = absl::StrCat(service, ".audit_log");
    EXPECT_EQ(Owner(log), "qsign_audit");
    // Indexed by its owner for ListAccountAudit (the service's own attempt is skipped).
    EXPECT_EQ(Indexes(log),
              std::vector<std::string>({"audit_log_actor", "audit_log_pkey", "audit_log_target"}));
    EXPECT_EQ(Owner(absl::StrCat(service, ".schema_migrations")), service);
    ASSERT_TRUE(Append(*as_service, service, "first").ok());
    ASSERT_TRUE(Append(*as_service, service, "second").ok());
    EXPECT_TRUE(db::VerifyAuditChain(*as_service, service).ok());

    // Without grant options this grants nothing (PostgreSQL only warns); the refusals below
    // prove it.
    (void)as_service->Exec(
        absl::StrCat("GRANT UPDATE, DELETE, TRUNCATE ON ", log, " TO ", service));
    for (const std::string& sql : std::vector<std::string>{
             absl::StrCat("UPDATE ", log, " SET actor = 'forged'"),
             absl::StrCat("DELETE FROM ", log),
             absl::StrCat("TRUNCATE ", log),
             absl::StrCat("ALTER TABLE ", log, " DISABLE TRIGGER USER"),
             absl::StrCat("DROP TRIGGER audit_log_no_truncate ON ", log),
             absl::StrCat("DROP TABLE ", log),
             absl::StrCat("DROP FUNCTION ", service, ".audit_log_refuse_change() CASCADE"),
             absl::StrCat("ALTER SCHEMA ", service, " RENAME TO ", service, "_old"),
             absl::StrCat("DROP SCHEMA ", service, " CASCADE"),
         }) {
      SCOPED_TRACE(sql);
      EXPECT_TRUE(Refused(as_service->Exec(sql).status()));
    }
    auto count = as_service->Exec(absl::StrCat("SELECT count(*) FROM ", log));
    ASSERT_TRUE(count.ok()) << count.status();
    EXPECT_EQ(count->Get(0, 0), "2");
    EXPECT_TRUE(db::VerifyAuditChain(*as_service, service).ok());
  }
}

TEST_F(RolesSqlTest, NoServiceReachesAnotherServicesSchema) {
  for (const char* service : kServices) {
    std::unique_ptr<Pool> as_service = PoolAs(service);
    ASSERT_NE(as_service, nullptr);
    ASSERT_TRUE(Migrate(service, *as_service).ok());
  }
  for (const char* service : kServices) {
    std::unique_ptr<Pool> as_service = PoolAs(service);
    ASSERT_NE(as_service, nullptr);
    for (const char* other : kServices) {
      if (std::string_view(other) == service) continue;
      SCOPED_TRACE(absl::StrCat(service, " -> ", other));
      EXPECT_TRUE(Refused(
          as_service->Exec(absl::StrCat("SELECT count(*) FROM ", other, ".audit_log")).status()));
      EXPECT_TRUE(Refused(
          as_service->Exec(absl::StrCat("CREATE TABLE ", other, ".intruder (a int)")).status()));
    }
    EXPECT_TRUE(Refused(as_service->Exec("CREATE SCHEMA elsewhere").status()));
    EXPECT_TRUE(Refused(as_service->Exec("CREATE TABLE public.intruder (a int)").status()));
  }
}

// The web's role keeps the browser sessions its replicas share (schema web, no audit log): it
// migrates its own schema and reaches no service's, and no service reaches its sessions.
TEST_F(RolesSqlTest, TheWebRoleOwnsTheSessionsAndNothingElse) {
  std::unique_ptr<Pool> as_web = PoolAs("web");
  ASSERT_NE(as_web, nullptr);
  ASSERT_TRUE(web::SessionStore::Migrate(*as_web).ok()) << web::SessionStore::Migrate(*as_web);
  ASSERT_TRUE(web::SessionStore::Migrate(*as_web).ok());
  EXPECT_EQ(Owner("web.sessions"), "web");
  EXPECT_EQ(Owner("web.sign_jobs"), "web");
  for (const char* service : kServices) {
    SCOPED_TRACE(service);
    std::unique_ptr<Pool> as_service = PoolAs(service);
    ASSERT_NE(as_service, nullptr);
    ASSERT_TRUE(Migrate(service, *as_service).ok());
    EXPECT_TRUE(Refused(as_service->Exec("SELECT count(*) FROM web.sessions").status()));
    EXPECT_TRUE(Refused(
        as_web->Exec(absl::StrCat("SELECT count(*) FROM ", service, ".audit_log")).status()));
    EXPECT_TRUE(Refused(
        as_web->Exec(absl::StrCat("CREATE TABLE ", service, ".intruder (a int)")).status()));
  }
  EXPECT_TRUE(Refused(as_web->Exec("CREATE SCHEMA elsewhere").status()));
}

TEST_F(RolesSqlTest, RerunningHandsOverAuditLogsMigratedBeforeIt) {
  // A schema migrated by the superuser (an install older than roles.sql): the audit log is
  // handed over when roles.sql runs again.
  ASSERT_TRUE(pool().Exec("DROP EVENT TRIGGER qsign_audit_log_hand_over").ok());
  ASSERT_TRUE(signer::MigrateSignerSchema(pool()).ok());
  EXPECT_EQ(Owner("signer.audit_log"), "postgres");
  ASSERT_TRUE(pool().InTransaction([](db::Tx& tx) { return tx.ExecScript(ReadRolesSql()); }).ok());
  EXPECT_EQ(Owner("signer.audit_log"), "qsign_audit");
  EXPECT_EQ(Indexes("signer.audit_log"),
            std::vector<std::string>({"audit_log_actor", "audit_log_pkey", "audit_log_target"}));
  std::unique_ptr<Pool> as_signer = PoolAs("signer");
  ASSERT_NE(as_signer, nullptr);
  EXPECT_TRUE(Append(*as_signer, "signer", "after hand-over").ok());
  EXPECT_TRUE(Refused(as_signer->Exec("DELETE FROM signer.audit_log").status()));
}

// qsign-audit's role: it reads every chain and signs its head (writing only schema audit), and
// reaches nothing else of any service.
TEST_F(RolesSqlTest, TheAuditRoleSignsEveryChainsHeadAndReadsNothingElse) {
  for (const char* service : kServices) {
    std::unique_ptr<Pool> as_service = PoolAs(service);
    ASSERT_NE(as_service, nullptr);
    ASSERT_TRUE(Migrate(service, *as_service).ok());
    ASSERT_TRUE(Append(*as_service, service, "before the heads are signed").ok());
  }
  auto token = hsm::testing::SoftHsmToken::Create("qsign-audit");
  ASSERT_TRUE(token.ok()) << token.status();
  auto hsm = hsm::NewPkcs11Hsm((*token)->config(1));
  ASSERT_TRUE(hsm.ok()) << hsm.status();
  std::unique_ptr<Pool> as_audit = PoolAs("audit");
  ASSERT_NE(as_audit, nullptr);
  auto heads =
      audit::SignHeads(*as_audit, **hsm, "qsign-audit-1", /*create_key=*/true, absl::Now());
  ASSERT_TRUE(heads.ok()) << heads.status();
  std::vector<std::string> signed_schemas;
  for (const audit::SignedHead& h : *heads) signed_schemas.push_back(h.schema);
  EXPECT_EQ(signed_schemas,
            std::vector<std::string>({"consent", "identity", "lifecycle", "signer", "tsa"}));
  auto spki = (*hsm)->GetPublicKey("qsign-audit-1");
  ASSERT_TRUE(spki.ok()) << spki.status();
  const audit::Report report = audit::Verify(*as_audit, spki->spki_der);
  EXPECT_TRUE(report.ok) << absl::StrJoin(report.lines, "\n");
  // The signed heads are append-only for the audit role too: it cannot rewrite what it signed.
  EXPECT_EQ(Owner("audit.chain_heads"), "qsign_audit");
  for (const std::string& sql : std::vector<std::string>{
           "UPDATE audit.chain_heads SET seq = 0", "DELETE FROM audit.chain_heads",
           "TRUNCATE audit.chain_heads", "ALTER TABLE audit.chain_heads DISABLE TRIGGER USER",
           "DROP TABLE audit.chain_heads", "DROP SCHEMA audit CASCADE"}) {
    SCOPED_TRACE(sql);
    EXPECT_TRUE(Refused(as_audit->Exec(sql).status()));
  }
  // The next round appends.
  ASSERT_TRUE(audit::SignHeads(*as_audit, **hsm, "qsign-audit-1", false, absl::Now()).ok());

  for (const char* service : kServices) {
    SCOPED_TRACE(service);
    const std::string log = absl::StrCat(service, ".audit_log");
    EXPECT_TRUE(Refused(
        as_audit->Exec(absl::StrCat("INSERT INTO ", log, " SELECT * FROM ", log, " LIMIT 1"))
            .status()));
    EXPECT_TRUE(Refused(as_audit->Exec(absl::StrCat("DELETE FROM ", log)).status()));
    EXPECT_TRUE(
        Refused(as_audit->Exec(absl::StrCat("SELECT count(*) FROM ", service, ".schema_migrations"))
                    .status()));
    EXPECT_TRUE(Refused(
        as_audit->Exec(absl::StrCat("CREATE TABLE ", service, ".intruder (a int)")).status()));
  }
  // Not the PIN verifiers, the sessions, the SAD journal, the keys' records.
  for (const char* table : {"consent.devices", "identity.sessions", "signer.credentials"}) {
    SCOPED_TRACE(table);
    EXPECT_TRUE(Refused(as_audit->Exec(absl::StrCat("SELECT count(*) FROM ", table)).status()));
  }
  EXPECT_TRUE(Refused(as_audit->Exec("CREATE SCHEMA elsewhere").status()));
  // No service reads or writes the signed heads.
  std::unique_ptr<Pool> as_identity = PoolAs("identity");
  ASSERT_NE(as_identity, nullptr);
  EXPECT_TRUE(Refused(as_identity->Exec("SELECT count(*) FROM audit.chain_heads").status()));
}

TEST_F(RolesSqlTest, ASuperuserMayStillRepairTheAuditLog) {
  std::unique_ptr<Pool> as_identity = PoolAs("identity");
  ASSERT_NE(as_identity, nullptr);
  ASSERT_TRUE(identity::MigrateIdentitySchema(*as_identity).ok());
  // Dropping is an operator's act (e.g. restoring from backup), never the service's.
  EXPECT_TRUE(pool().Exec("DROP SCHEMA identity CASCADE").ok());
}

}  // namespace
}  // namespace qsign
