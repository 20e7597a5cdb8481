// qsign-audit against a real PostgreSQL and a real SoftHSM2 token: two schemas with audit chains
// and a journal, chain heads signed by the audit key, then each way a database administrator
// could tamper (edit, delete, reorder, re-hash the whole chain, drop the newest records, disable
// a journal's trigger, forge a head) is detected and named; an export verifies offline and its
// tampered copies do not.
#include "tools/audit/audit_tool.h"

#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "tests/testing/service_test.h"
#include "tests/testing/shell.h"

namespace qsign::audit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

std::string Lines(const Report& r) { return absl::StrJoin(r.lines, "\n"); }

class AuditToolTest : public testing::ServiceTest {
 protected:
  // The database and the audit role's token (label qsign-audit) from ServiceTest, opened once
  // the other processes of a test are done with the module.
  AuditToolTest() : ServiceTest({.pool_size = 4, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // The audit role's own token (kTokenRoles "audit"), as qsign-audit sign-heads opens it.
    ASSERT_TRUE(OpenHsm(1).ok());
    static const std::string sql =
        absl::StrCat(std::string(db::AuditTableSql()),
                     "CREATE TABLE events (id bigint PRIMARY KEY);", db::AppendOnlySql("events"));
    const db::Migration migrations[] = {{1, "audit and a journal", sql}};
    for (const char* schema : {"alpha", "beta"}) {
      ASSERT_TRUE(db::ApplyMigrations(pool(), schema, migrations).ok());
      for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Append(schema, i).ok());
    }
    auto heads = SignHeads(pool(), hsm("audit"), "qsign-audit-1", /*create_key=*/true,
                           kT0 + absl::Minutes(10));
    ASSERT_TRUE(heads.ok()) << heads.status();
    ASSERT_EQ(heads->size(), 2u);
    auto key = hsm("audit").GetPublicKey("qsign-audit-1");
    ASSERT_TRUE(key.ok());
    spki_ = key->spki_der;
  }

  absl::Status Append(std::string_view schema, int i) {
    return pool().InTransaction([&](db::Tx& tx) {
      return db::AppendAudit(tx, schema,
                             {.actor = absl::StrCat("operator-", i),
                              .action = "certificate.revoke",
                              .target = absl::StrCat("serial-", i),
                              .client_address = "10.0.0.7:5123",
                              .outcome = "ok",
                              .details = "{\"reason\":\"keyCompromise\"}"},
                             kT0 + absl::Seconds(i));
    });
  }

  // As a superuser: switch the append-only trigger off, run `sql`, switch it back on.
  void Tamper(const std::string& sql) {
    ASSERT_TRUE(
        pool()
            .InTransaction([&](db::Tx& tx) {
              return tx.ExecScript(absl::StrCat(
                  "ALTER TABLE alpha.audit_log DISABLE TRIGGER audit_log_no_update_delete; ", sql,
                  "; ALTER TABLE alpha.audit_log ENABLE TRIGGER "
                  "audit_log_no_update_delete;"));
            })
            .ok());
  }

  // A database administrator's forgery: record `from` of alpha edited and every hash from there
  // on recomputed, so that the chain itself is consistent again.
  void RewriteFrom(int from) {
    Tamper(absl::StrCat("UPDATE alpha.audit_log SET target = 'serial-999' WHERE seq = ", from));
    auto rows = pool().Exec(
        "SELECT seq, at, actor, action, target, client_address, outcome, details FROM "
        "alpha.audit_log WHERE seq >= $1 ORDER BY seq",
        {db::Param::Int(from)});
    ASSERT_TRUE(rows.ok());
    std::string prev_hash(32, '\0');  // The genesis link.
    if (from > 1) {
      auto prev = pool().Exec("SELECT hash FROM alpha.audit_log WHERE seq = $1",
                              {db::Param::Int(from - 1)});
      ASSERT_TRUE(prev.ok());
      prev_hash = prev->GetBytes(0, 0).value();
    } else {
      auto first = pool().Exec("SELECT prev_hash FROM alpha.audit_log WHERE seq = 1");
      ASSERT_TRUE(first.ok());
      prev_hash = first->GetBytes(0, 0).value();
    }
    for (int i = 0; i < rows->rows(); ++i) {
      const int64_t seq = rows->GetInt64(i, 0).value();
      const db::AuditEvent e{.actor = std::string(rows->Get(i, 2)),
                             .action = std::string(rows->Get(i, 3)),
                             .target = std::string(rows->Get(i, 4)),
                             .client_address = std::string(rows->Get(i, 5)),
                             .outcome = std::string(rows->Get(i, 6)),
                             .details = std::string(rows->Get(i, 7))};
      const std::string hash = db::AuditRecordHash(prev_hash, seq, e, rows->GetTime(i, 1).value());
      ASSERT_TRUE(
          pool()
              .InTransaction([&](db::Tx& tx) -> absl::Status {
                if (auto s = tx.ExecScript("ALTER TABLE alpha.audit_log DISABLE TRIGGER "
                                           "audit_log_no_update_delete");
                    !s.ok()) {
                  return s;
                }
                return tx
                    .Exec(
                        "UPDATE alpha.audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3",
                        {db::Param::Bytes(prev_hash), db::Param::Bytes(hash), db::Param::Int(seq)})
                    .status();
              })
              .ok());
      prev_hash = hash;
    }
  }

  std::string ExportAll() {
    std::ostringstream out;
    EXPECT_TRUE(Export(pool(), kT0, kT0 + absl::Hours(1), "", out).ok());
    return out.str();
  }

  // The audit token as the tool is pointed at it (module, label, PIN file).
  hsm::Pkcs11Config AuditTokenConfig() const {
    const hsm::Pkcs11TokensConfig all = env().TokensConfig(1);
    for (const hsm::Pkcs11TokenConfig& t : all.tokens) {
      if (t.role == "audit") {
        return {.module_path = all.module_path,
                .token_label = t.token_label,
                .pin_file = t.pin_file,
                .session_pool_size = 1};
      }
    }
    ADD_FAILURE() << "no audit role in kTokenRoles";
    return {};
  }

  std::string spki_;
};

TEST_F(AuditToolTest, IntactTrailVerifiesEveryChainHeadAndJournal) {
  const Report r = Verify(pool(), spki_);
  EXPECT_TRUE(r.ok) << Lines(r);
  EXPECT_THAT(Lines(r), HasSubstr("OK alpha.audit_log: 5 records, chain intact"));
  EXPECT_THAT(Lines(r), HasSubstr("OK beta.audit_log: 5 records, chain intact"));
  EXPECT_THAT(Lines(r), HasSubstr("OK alpha.audit_log: 1 signed head(s), newest seq 5"));
  EXPECT_THAT(Lines(r), HasSubstr("signatures verified"));
  EXPECT_THAT(Lines(r), HasSubstr("OK alpha.events: append-only"));
  EXPECT_THAT(Lines(r), HasSubstr("OK beta.audit_log: append-only"));
  std::printf("%s\n", Lines(r).c_str());
}

TEST_F(AuditToolTest, EditedRecordIsNamed) {
  Tamper("UPDATE alpha.audit_log SET outcome = 'denied' WHERE seq = 3");
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("BROKEN audit log alpha.audit_log is corrupt at seq 3: hash "
                                  "does not match the record's content"));
  EXPECT_THAT(Lines(r), HasSubstr("OK beta.audit_log: 5 records, chain intact"));
}

TEST_F(AuditToolTest, DeletedRecordIsNamed) {
  Tamper("DELETE FROM alpha.audit_log WHERE seq = 2");
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r),
              HasSubstr("alpha.audit_log is corrupt at seq 2: record missing (next is 3)"));
}

TEST_F(AuditToolTest, ReorderedRecordsAreNamed) {
  Tamper(
      "UPDATE alpha.audit_log SET seq = 1000 WHERE seq = 2; "
      "UPDATE alpha.audit_log SET seq = 2 WHERE seq = 3; "
      "UPDATE alpha.audit_log SET seq = 3 WHERE seq = 1000");
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("alpha.audit_log is corrupt at seq 2: prev_hash differs from "
                                  "the previous record's hash"));
}

TEST_F(AuditToolTest, RehashedChainIsCaughtByTheSignedHead) {
  // Edit record 3 and recompute every hash from there on: the chain itself is consistent again.
  ASSERT_NO_FATAL_FAILURE(RewriteFrom(3));
  ASSERT_TRUE(db::VerifyAuditChain(pool(), "alpha").ok()) << "the forgery is self-consistent";
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("BROKEN alpha.audit_log seq 5: hash "));
  EXPECT_THAT(Lines(r), HasSubstr("the chain was rewritten"));
}

// The scheduler (qsign-audit sign-heads --every) signs the heads again and again while the
// services append; a database administrator who then rewrites the whole chain, every hash
// recomputed from the first record, is caught by the newest signed head.
TEST_F(AuditToolTest, PeriodicallySignedHeadsCatchAWholeChainRewrite) {
  const hsm::Pkcs11Config token = AuditTokenConfig();
  std::atomic<bool> done{false};
  std::atomic<int> appended{5};
  std::thread services([&] {
    while (!done.load()) {
      if (Append("alpha", appended + 1).ok()) ++appended;
      absl::SleepFor(absl::Milliseconds(200));
    }
  });
  std::string output;
  const int status = testing::RunCommand(
      absl::StrCat("timeout --preserve-status -s TERM 3.5 ", QSIGN_AUDIT_PATH,
                   " sign-heads --every=1s --db=", testing::ShellQuote(conninfo()),
                   " --pkcs11_module=", token.module_path, " --token_label=", token.token_label,
                   " --pin_file=", token.pin_file),
      &output);
  done.store(true);
  services.join();
  EXPECT_EQ(status, 0) << output;  // SIGTERM ends it cleanly between rounds.
  auto heads =
      pool().Exec("SELECT count(*), max(seq) FROM audit.chain_heads WHERE schema_name = 'alpha'");
  ASSERT_TRUE(heads.ok()) << heads.status();
  const int64_t signed_heads = heads->GetInt64(0, 0).value_or(0);
  const int64_t newest_signed = heads->GetInt64(0, 1).value_or(0);
  EXPECT_GE(signed_heads, 3) << output;  // SetUp's, then a round a second.
  EXPECT_GT(newest_signed, 5) << "no head signed after the services appended\n" << output;
  ASSERT_TRUE(Verify(pool(), spki_).ok);

  ASSERT_NO_FATAL_FAILURE(RewriteFrom(1));
  ASSERT_TRUE(db::VerifyAuditChain(pool(), "alpha").ok()) << "the forgery is self-consistent";
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("the chain was rewritten"));
  std::printf(
      "[ counts   ] audit heads: %lld signed for alpha (newest seq %lld of %d), whole "
      "chain rewritten: caught=%d\n",
      static_cast<long long>(signed_heads), static_cast<long long>(newest_signed), appended.load(),
      r.ok ? 0 : 1);
}

TEST_F(AuditToolTest, DroppedNewestRecordsAreCaughtByTheSignedHead) {
  Tamper("DELETE FROM alpha.audit_log WHERE seq >= 4");
  ASSERT_TRUE(db::VerifyAuditChain(pool(), "alpha").ok()) << "a shorter chain is still a chain";
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("BROKEN alpha.audit_log seq 5: missing, but a signed head "
                                  "names it"));
}

TEST_F(AuditToolTest, ForgedHeadIsRefused) {
  ASSERT_TRUE(pool()
                  .Exec("INSERT INTO audit.chain_heads (schema_name, seq, hash, signed_at, key_id, "
                        "signature) VALUES ('alpha', 5, $1, now(), 'qsign-audit-1', '\\x3000')",
                        {db::Param::Bytes(std::string(32, 'x'))})
                  .ok());
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("seq 5, signed at"));
  EXPECT_THAT(Lines(r), HasSubstr("the signature does not verify with the audit key"));
}

TEST_F(AuditToolTest, DisabledJournalTriggerIsNamed) {
  ASSERT_TRUE(pool().Exec("ALTER TABLE beta.events DISABLE TRIGGER events_no_truncate").ok());
  ASSERT_TRUE(pool().Exec("DROP TRIGGER events_no_update_delete ON alpha.events").ok());
  const Report r = Verify(pool(), spki_);
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(Lines(r), HasSubstr("BROKEN alpha.events: no longer append-only: trigger "
                                  "events_no_update_delete is gone"));
  EXPECT_THAT(Lines(r), HasSubstr("BROKEN beta.events: no longer append-only: trigger "
                                  "events_no_truncate is disabled"));
}

TEST_F(AuditToolTest, ExportVerifiesOfflineAndTamperedExportsDoNot) {
  ASSERT_TRUE(Append("alpha", 6).ok());  // After the signed head: exported, not yet signed.
  std::ostringstream range;
  ASSERT_TRUE(Export(pool(), kT0 + absl::Seconds(2), kT0 + absl::Hours(1), "alpha", range).ok());
  const std::string text = range.str();
  EXPECT_THAT(text, HasSubstr("{\"hash\":"));
  EXPECT_THAT(text, HasSubstr("\"kind\":\"anchor\""));
  EXPECT_THAT(text, HasSubstr("\"kind\":\"head\""));
  {
    std::istringstream in(text);
    const Report r = VerifyExport(in, spki_);
    EXPECT_TRUE(r.ok) << Lines(r);
    EXPECT_THAT(Lines(r), HasSubstr("OK alpha.audit_log: 5 records from seq 2, chain intact"));
  }
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  {  // An edited record.
    std::vector<std::string> edited = lines;
    for (std::string& l : edited) {
      if (l.find("\"seq\":3") != std::string::npos && l.find("record") != std::string::npos) {
        l = absl::StrReplaceAll(l, {{"serial-3", "serial-9"}});
      }
    }
    std::istringstream in(absl::StrJoin(edited, "\n"));
    const Report r = VerifyExport(in, spki_);
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(Lines(r), HasSubstr("alpha.audit_log seq 3: hash "));
    EXPECT_THAT(Lines(r), HasSubstr("does not match the content"));
  }
  {  // A record left out.
    std::vector<std::string> removed;
    for (const std::string& l : lines) {
      if (l.find("\"seq\":4") == std::string::npos || l.find("record") == std::string::npos) {
        removed.push_back(l);
      }
    }
    std::istringstream in(absl::StrJoin(removed, "\n"));
    const Report r = VerifyExport(in, spki_);
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(Lines(r), HasSubstr("alpha.audit_log seq 5: expected seq 4"));
  }
}

TEST_F(AuditToolTest, TheBinaryExitsZeroWhenIntactAndOneWhenBroken) {
  const std::string key_file = token().dir() + "/audit.pub";
  {
    std::ofstream f(key_file, std::ios::binary);
    f << spki_;
  }
  auto run = [&](std::string& output) {
    const std::string cmd = absl::StrCat(QSIGN_AUDIT_PATH, " verify '--db=", conninfo(),
                                         "' --audit_public_key=", key_file, " 2>&1");
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output.append(buf, n);
    return WEXITSTATUS(pclose(p));
  };
  std::string out;
  EXPECT_EQ(run(out), 0) << out;
  EXPECT_THAT(out, HasSubstr("audit: verified"));
  Tamper("UPDATE alpha.audit_log SET details = '{}' WHERE seq = 4");
  out.clear();
  EXPECT_EQ(run(out), 1) << out;
  EXPECT_THAT(out, HasSubstr("BROKEN audit log alpha.audit_log is corrupt at seq 4"));
  EXPECT_THAT(out, Not(HasSubstr("audit: verified")));
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace qsign::audit
