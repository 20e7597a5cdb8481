#include "services/signer/signer_store.h"

#include <deque>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/db/migrate.h"
#include "common/echo.h"
#include "common/refusal.h"
#include "common/strings.h"

namespace qsign::signer {
namespace {

using db::Param;

constexpr std::string_view kSchema = "signer";

absl::StatusOr<CredentialStatus> ParseStatus(std::string_view s) {
  if (s == "PENDING") return CredentialStatus::kPending;
  if (s == "ACTIVE") return CredentialStatus::kActive;
  if (s == "DISABLED") return CredentialStatus::kDisabled;
  if (s == "EXPIRED") return CredentialStatus::kExpired;
  return absl::InternalError(absl::StrCat("signer.credentials: unknown status ", Av(s)));
}

absl::Status NoCredential(std::string_view credential_id) {
  return Refuse(absl::StatusCode::kNotFound, v1::Refusal::CREDENTIAL_NOT_FOUND, "credential_id",
                absl::StrCat("no credential ", Echo(credential_id)));
}

constexpr char kCredentialColumns[] =
    "credential_id, account_id, status, key_type, public_key_spki, created_at, valid_from, "
    "valid_to, key_destroyed_at";

class PostgresSignerStore final : public SignerStore {
 public:
  explicit PostgresSignerStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<Credential> GetCredential(std::string_view credential_id) override {
    auto res = pool_->Exec(absl::StrCat("SELECT ", kCredentialColumns,
                                        " FROM signer.credentials WHERE credential_id = $1"),
                           {Param::Text(credential_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return NoCredential(credential_id);
    return ReadCredential(*res, 0);
  }

  absl::StatusOr<std::vector<Credential>> ListCredentials(std::string_view account_id,
                                                          bool only_active) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kCredentialColumns,
                     " FROM signer.credentials WHERE account_id = $1 AND "
                     "($2 = false OR status = 'ACTIVE') ORDER BY created_at, credential_id"),
        {Param::Text(account_id), Param::Bool(only_active)});
    if (!res.ok()) return res.status();
    std::vector<Credential> out;
    for (int i = 0; i < res->rows(); ++i) {
      auto cred = ReadCredential(*res, i);
      if (!cred.ok()) return cred.status();
      out.push_back(*std::move(cred));
    }
    return out;
  }

  absl::Status CreateCredential(const Credential& c, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "INSERT INTO signer.credentials (credential_id, account_id, status, key_type, "
          "public_key_spki, created_at) VALUES ($1, $2, 'PENDING', $3, $4, $5)",
          {Param::Text(c.credential_id), Param::Text(c.account_id),
           Param::Text(hsm::KeyTypeName(c.key_type)), Param::Bytes(c.public_key_spki),
           Param::Time(c.created_at)});
      if (!res.ok()) {
        if (res.status().code() == absl::StatusCode::kAlreadyExists) {
          return absl::AlreadyExistsError(
              absl::StrCat("credential_id: ", Echo(c.credential_id), " exists"));
        }
        return res.status();
      }
      return db::AppendAudit(tx, kSchema, audit, c.created_at);
    });
  }

  absl::Status ActivateCredential(std::string_view credential_id,
                                  const std::vector<std::string>& chain_der, absl::Time valid_from,
                                  absl::Time valid_to, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE signer.credentials SET status = 'ACTIVE', valid_from = $2, valid_to = $3 "
          "WHERE credential_id = $1 AND status IN ('PENDING', 'ACTIVE') RETURNING now()",
          {Param::Text(credential_id), Param::Time(valid_from), Param::Time(valid_to)});
      if (!res.ok()) return res.status();
      if (res->rows() == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("credential ", Echo(credential_id), " is disabled, expired or gone"));
      }
      auto at = res->GetTime(0, 0);
      if (!at.ok()) return at.status();
      if (auto del = tx.Exec("DELETE FROM signer.credential_certificates WHERE credential_id = $1",
                             {Param::Text(credential_id)});
          !del.ok()) {
        return del.status();
      }
      for (size_t i = 0; i < chain_der.size(); ++i) {
        auto ins = tx.Exec(
            "INSERT INTO signer.credential_certificates (credential_id, position, der) "
            "VALUES ($1, $2, $3)",
            {Param::Text(credential_id), Param::Int(static_cast<int64_t>(i)),
             Param::Bytes(chain_der[i])});
        if (!ins.ok()) return ins.status();
      }
      return db::AppendAudit(tx, kSchema, audit, *at);
    });
  }

  absl::Status DisableCredential(std::string_view credential_id, CredentialStatus to,
                                 const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE signer.credentials SET status = $2, disabled_at = now() "
          "WHERE credential_id = $1 AND status IN ('PENDING', 'ACTIVE') RETURNING disabled_at",
          {Param::Text(credential_id), Param::Text(CredentialStatusName(to))});
      if (!res.ok()) return res.status();
      if (res->rows() == 0) {
        // Already ended (idempotent), or no such credential.
        auto exists = tx.Exec("SELECT 1 FROM signer.credentials WHERE credential_id = $1",
                              {Param::Text(credential_id)});
        if (!exists.ok()) return exists.status();
        return exists->rows() == 0 ? NoCredential(credential_id) : absl::OkStatus();
      }
      auto at = res->GetTime(0, 0);
      if (!at.ok()) return at.status();
      return db::AppendAudit(tx, kSchema, audit, *at);
    });
  }

  absl::Status MarkKeyDestroyed(std::string_view credential_id, absl::Time at,
                                const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE signer.credentials SET key_destroyed_at = $2 "
          "WHERE credential_id = $1 AND key_destroyed_at IS NULL",
          {Param::Text(credential_id), Param::Time(at)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() == 0) return absl::OkStatus();
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

  absl::Status ReleaseSad(std::string_view sad_id) override {
    return pool_->Exec("DELETE FROM signer.sad_uses WHERE sad_id = $1", {Param::Bytes(sad_id)})
        .status();
  }

  absl::Status RecordAudit(const db::AuditEvent& audit, absl::Time at) override {
    return pool_->InTransaction(
        [&](db::Tx& tx) -> absl::Status { return db::AppendAudit(tx, kSchema, audit, at); });
  }

  absl::Status ConsumeSad(const SadUse& u) override {
    Pending pending{.use = &u};
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(&pending);
      // Group commit, leader/follower: whoever finds a free flush slot writes everything queued
      // so far in one statement; the others wait for their verdict. Concurrent calls thus share
      // one round trip and one commit, and a lone call still goes straight through.
      while (!pending.done) {
        if (flushers_ < kMaxFlushers && !queue_.empty()) {
          ++flushers_;
          std::vector<Pending*> batch;
          while (!queue_.empty() && batch.size() < kMaxGroup) {
            batch.push_back(queue_.front());
            queue_.pop_front();
          }
          mu_.Unlock();
          FlushGroup(batch);
          mu_.Lock();
          --flushers_;
          done_.SignalAll();
        } else {
          done_.Wait(&mu_);
        }
      }
    }
    if (!pending.result.ok() || pending.recorded) return pending.result;
    return Refusal(u);
  }

 private:
  struct Pending {
    const SadUse* use;
    bool done = false;
    bool recorded = false;
    absl::Status result;
  };

  static constexpr int kMaxFlushers = 2;
  static constexpr size_t kMaxGroup = 64;

  // One statement for the whole group: a journal row is written only if the credential is
  // active and the SAD was never recorded; the primary key makes that hold across replicas.
  void FlushGroup(const std::vector<Pending*>& group) {
    std::string sql =
        "INSERT INTO signer.sad_uses (sad_id, credential_id, account_id, consent_request_id, "
        "num_hashes, used_at, sad_expires_at, caller) SELECT v.* FROM (VALUES ";
    std::vector<Param> params;
    params.reserve(group.size() * 8);
    for (size_t i = 0; i < group.size(); ++i) {
      const SadUse& u = *group[i]->use;
      const size_t b = i * 8;
      absl::StrAppend(&sql, i == 0 ? "" : ", ", "($", b + 1, "::bytea, $", b + 2, "::text, $",
                      b + 3, "::text, $", b + 4, "::text, $", b + 5, "::int, $", b + 6,
                      "::timestamptz, $", b + 7, "::timestamptz, $", b + 8, "::text)");
      params.push_back(Param::Bytes(u.sad_id));
      params.push_back(Param::Text(u.credential_id));
      params.push_back(Param::Text(u.account_id));
      params.push_back(Param::Text(u.consent_request_id));
      params.push_back(Param::Int(u.num_hashes));
      params.push_back(Param::Time(u.used_at));
      params.push_back(Param::Time(u.sad_expires_at));
      params.push_back(Param::Text(u.caller));
    }
    absl::StrAppend(&sql,
                    ") AS v (sad_id, credential_id, account_id, consent_request_id, num_hashes, "
                    "used_at, sad_expires_at, caller) WHERE EXISTS (SELECT 1 FROM "
                    "signer.credentials c WHERE c.credential_id = v.credential_id AND "
                    "c.status = 'ACTIVE' AND c.valid_from <= v.used_at AND "
                    "v.used_at <= c.valid_to) ON CONFLICT (sad_id) DO NOTHING RETURNING sad_id");
    auto res = pool_->Exec(sql, params);
    absl::flat_hash_set<std::string> recorded;
    absl::Status status = res.status();
    if (res.ok()) {
      for (int r = 0; r < res->rows() && status.ok(); ++r) {
        auto id = res->GetBytes(r, 0);
        if (id.ok()) {
          recorded.insert(*std::move(id));
        } else {
          status = id.status();
        }
      }
    }
    absl::MutexLock lock(&mu_);
    for (Pending* p : group) {
      p->result = status;
      // A SAD twice in one group is recorded once: only its first use counts.
      p->recorded = status.ok() && recorded.erase(p->use->sad_id) > 0;
      p->done = true;
    }
  }

  // Why a SAD use was not recorded: used before, or the credential is not active.
  absl::Status Refusal(const SadUse& u) {
    // Slow path: say which rule refused it.
    auto used =
        pool_->Exec("SELECT 1 FROM signer.sad_uses WHERE sad_id = $1", {Param::Bytes(u.sad_id)});
    if (!used.ok()) return used.status();
    if (used->rows() > 0) {
      return Refuse(absl::StatusCode::kFailedPrecondition, v1::Refusal::SAD_USED, "sad",
                    "already used");
    }
    auto cred = GetCredential(u.credential_id);
    if (!cred.ok()) return cred.status();
    if (cred->status == CredentialStatus::kActive) {
      if (auto s = CheckValidity(*cred, u.used_at); !s.ok()) return s;
    }
    return Refuse(
        absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_INACTIVE, "credential_id",
        absl::StrCat("credential is ", Av(CredentialStatusName(cred->status)),
                     cred->status == CredentialStatus::kPending   ? " (no certificate yet)"
                     : cred->status == CredentialStatus::kExpired ? " (its certificate ended)"
                                                                  : " (revoked; key destroyed)"));
  }

  absl::StatusOr<Credential> ReadCredential(const db::Result& r, int row) {
    Credential c;
    c.credential_id = std::string(r.Get(row, 0));
    c.account_id = std::string(r.Get(row, 1));
    auto status = ParseStatus(r.Get(row, 2));
    if (!status.ok()) return status.status();
    c.status = *status;
    auto type = hsm::ParseKeyType(r.Get(row, 3));
    if (!type.ok()) return absl::InternalError(type.status().message());
    c.key_type = *type;
    auto spki = r.GetBytes(row, 4);
    if (!spki.ok()) return spki.status();
    c.public_key_spki = *std::move(spki);
    auto created = r.GetTime(row, 5);
    if (!created.ok()) return created.status();
    c.created_at = *created;
    if (!r.IsNull(row, 6)) {
      auto t = r.GetTime(row, 6);
      if (!t.ok()) return t.status();
      c.valid_from = *t;
    }
    if (!r.IsNull(row, 7)) {
      auto t = r.GetTime(row, 7);
      if (!t.ok()) return t.status();
      c.valid_to = *t;
    }
    if (!r.IsNull(row, 8)) {
      auto t = r.GetTime(row, 8);
      if (!t.ok()) return t.status();
      c.key_destroyed_at = *t;
    }
    if (c.status != CredentialStatus::kPending) {
      auto certs = pool_->Exec(
          "SELECT der FROM signer.credential_certificates WHERE credential_id = $1 "
          "ORDER BY position",
          {Param::Text(c.credential_id)});
      if (!certs.ok()) return certs.status();
      for (int i = 0; i < certs->rows(); ++i) {
        auto der = certs->GetBytes(i, 0);
        if (!der.ok()) return der.status();
        c.chain_der.push_back(*std::move(der));
      }
    }
    return c;
  }

  db::Pool* pool_;  // Not owned.
  absl::Mutex mu_;
  absl::CondVar done_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  int flushers_ ABSL_GUARDED_BY(mu_) = 0;
};

constexpr char kV1[] = R"sql(
CREATE TABLE credentials (
  credential_id   text PRIMARY KEY,
  account_id      text NOT NULL,
  status          text NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'DISABLED')),
  key_type        text NOT NULL,
  public_key_spki bytea NOT NULL,
  created_at      timestamptz NOT NULL,
  valid_from      timestamptz,
  valid_to        timestamptz,
  disabled_at     timestamptz
);
CREATE INDEX credentials_account ON credentials (account_id);

CREATE TABLE credential_certificates (
  credential_id text NOT NULL REFERENCES credentials (credential_id),
  position      int NOT NULL,
  der           bytea NOT NULL,
  PRIMARY KEY (credential_id, position)
);

-- The signing journal: one row per SignHash call, keyed by the SAD it used (single use).
CREATE TABLE sad_uses (
  sad_id             bytea PRIMARY KEY,
  credential_id      text NOT NULL,
  account_id         text NOT NULL,
  consent_request_id text NOT NULL,
  num_hashes         int NOT NULL,
  used_at            timestamptz NOT NULL,
  sad_expires_at     timestamptz NOT NULL,
  caller             text NOT NULL
);
CREATE INDEX sad_uses_credential ON sad_uses (credential_id, used_at);
)sql";

// EXPIRED: the certificate ended (the expiry sweeper); when the HSM key was destroyed.
constexpr char kV2[] = R"sql(
ALTER TABLE credentials DROP CONSTRAINT credentials_status_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_status_check
  CHECK (status IN ('PENDING', 'ACTIVE', 'DISABLED', 'EXPIRED'));
ALTER TABLE credentials ADD COLUMN key_destroyed_at timestamptz;
)sql";

}  // namespace

std::string_view CredentialStatusName(CredentialStatus status) {
  switch (status) {
    case CredentialStatus::kPending:
      return "PENDING";
    case CredentialStatus::kActive:
      return "ACTIVE";
    case CredentialStatus::kDisabled:
      return "DISABLED";
    case CredentialStatus::kExpired:
      return "EXPIRED";
  }
  return "UNKNOWN";
}

absl::Status CheckValidity(const Credential& c, absl::Time now) {
  if (c.valid_to.has_value() && now > *c.valid_to) {
    return Refuse(
        absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_EXPIRED, "credential_id",
        absl::StrCat("credential ", Av(c.credential_id), " expired at ",
                     absl::FormatTime(absl::RFC3339_sec, *c.valid_to, absl::UTCTimeZone()),
                     " (its certificate's notAfter); it signs no more"));
  }
  if (c.valid_from.has_value() && now < *c.valid_from) {
    return Refuse(
        absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_NOT_YET_VALID,
        "credential_id",
        absl::StrCat("credential ", Av(c.credential_id),
                     " is not yet valid: its certificate "
                     "starts at ",
                     absl::FormatTime(absl::RFC3339_sec, *c.valid_from, absl::UTCTimeZone())));
  }
  return absl::OkStatus();
}

CredentialStatus EffectiveStatus(const Credential& c, absl::Time now) {
  if (c.status == CredentialStatus::kActive && c.valid_to.has_value() && now > *c.valid_to) {
    return CredentialStatus::kExpired;
  }
  return c.status;
}

absl::Status MigrateSignerSchema(db::Pool& pool) {
  static const std::string v1 = absl::StrCat(kV1, Av(db::AuditTableSql()));
  const db::Migration migrations[] = {{1, "credentials, sad journal, audit log", v1},
                                      {2, "expired credentials, key destruction time", kV2}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

std::unique_ptr<SignerStore> NewPostgresSignerStore(db::Pool* pool) {
  return std::make_unique<PostgresSignerStore>(pool);
}

}  // namespace qsign::signer
