#include "services/tsa/tsa_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::tsa {
namespace {

using db::Param;

constexpr std::string_view kSchema = "tsa";

constexpr char kV1[] = R"sql(
-- TSTInfo.serialNumber: unique for every token this TSA (all replicas) ever issues.
CREATE SEQUENCE serials START 1 NO CYCLE;

-- One row per token issued, written with the serial; never changed (append-only below).
CREATE TABLE tokens (
  serial          bigint PRIMARY KEY,
  gen_time        timestamptz NOT NULL,
  hash_oid        text NOT NULL,
  imprint         bytea NOT NULL,
  policy_oid      text NOT NULL,
  certificate_serial text NOT NULL,
  has_nonce       boolean NOT NULL
);

-- The TSA certificates lifecycle issued, by TSA key.
CREATE TABLE certificates (
  serial_hex      text PRIMARY KEY,
  public_key      bytea NOT NULL,
  certificate_der bytea NOT NULL,
  chain_der       bytea NOT NULL,
  not_after       timestamptz NOT NULL,
  created_at      timestamptz NOT NULL
);
CREATE INDEX certificates_by_key ON certificates (public_key, created_at);
)sql";

// Concatenated DER certificates, one by one.
absl::StatusOr<std::vector<std::string>> SplitCertificates(std::string_view der) {
  std::vector<std::string> out;
  while (!der.empty()) {
    const unsigned char* p = Bytes(der);
    OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (!cert) return absl::InternalError("tsa.certificates: chain_der is not DER certificates");
    const size_t used = static_cast<size_t>(p - Bytes(der));
    out.emplace_back(der.substr(0, used));
    der.remove_prefix(used);
  }
  return out;
}

class PostgresTsaStore final : public TsaStore {
 public:
  explicit PostgresTsaStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<int64_t> IssueSerial(const TokenEvent& e) override {
    auto res = pool_->Exec(
        "INSERT INTO tsa.tokens (serial, gen_time, hash_oid, imprint, policy_oid, "
        "certificate_serial, has_nonce) VALUES (nextval('tsa.serials'), $1, $2, $3, $4, $5, $6) "
        "RETURNING serial",
        {Param::Time(e.gen_time), Param::Text(e.hash_oid), Param::Bytes(e.imprint),
         Param::Text(e.policy_oid), Param::Text(e.certificate_serial_hex),
         Param::Bool(e.has_nonce)});
    if (!res.ok()) return res.status();
    return res->GetInt64(0, 0);
  }

  absl::StatusOr<std::optional<TsaCertificate>> FindCertificate(
      std::string_view public_key) override {
    auto res = pool_->Exec(
        "SELECT serial_hex, certificate_der, chain_der, not_after FROM tsa.certificates "
        "WHERE public_key = $1 ORDER BY created_at DESC LIMIT 1",
        {Param::Bytes(public_key)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::nullopt;
    TsaCertificate out{.serial_hex = std::string(res->Get(0, 0))};
    auto der = res->GetBytes(0, 1);
    if (!der.ok()) return der.status();
    out.certificate_der = *std::move(der);
    auto chain = res->GetBytes(0, 2);
    if (!chain.ok()) return chain.status();
    auto split = SplitCertificates(*chain);
    if (!split.ok()) return split.status();
    out.chain_der = *std::move(split);
    auto not_after = res->GetTime(0, 3);
    if (!not_after.ok()) return not_after.status();
    out.not_after = *not_after;
    return out;
  }

  absl::Status SaveCertificate(std::string_view public_key, const TsaCertificate& cert,
                               const db::AuditEvent& audit, absl::Time at) override {
    const std::string chain = absl::StrJoin(cert.chain_der, "");
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto ins = tx.Exec(
          "INSERT INTO tsa.certificates (serial_hex, public_key, certificate_der, chain_der, "
          "not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
          {Param::Text(cert.serial_hex), Param::Bytes(public_key),
           Param::Bytes(cert.certificate_der), Param::Bytes(chain), Param::Time(cert.not_after),
           Param::Time(at)});
      if (!ins.ok()) return ins.status();
      if (ins->affected_rows() == 0) return absl::OkStatus();  // Another replica kept it.
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

 private:
  db::Pool* pool_;  // Not owned.
};

}  // namespace

absl::Status MigrateTsaSchema(db::Pool& pool) {
  static const std::string v1 =
      absl::StrCat(kV1, db::AppendOnlySql("tokens"), Av(db::AuditTableSql()));
  const db::Migration migrations[] = {{1, "serials, token journal, certificates, audit log", v1}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

std::unique_ptr<TsaStore> NewPostgresTsaStore(db::Pool* pool) {
  return std::make_unique<PostgresTsaStore>(pool);
}

}  // namespace qsign::tsa
