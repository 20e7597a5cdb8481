#include "services/lifecycle/ca/ca_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "services/lifecycle/schema.h"

namespace qsign::lifecycle {
namespace {

using db::Param;

class PostgresCaStore final : public CaStore {
 public:
  explicit PostgresCaStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<std::vector<CaRecord>> ListCas() override {
    auto res = pool_->Exec(
        "SELECT name, key_id, key_type, issuer, certificate_der, serial_hex, not_after, "
        "created_at FROM lifecycle.cas ORDER BY created_at, name");
    if (!res.ok()) return res.status();
    std::vector<CaRecord> out;
    for (int i = 0; i < res->rows(); ++i) {
      CaRecord ca;
      ca.name = std::string(res->Get(i, 0));
      ca.key_id = std::string(res->Get(i, 1));
      auto type = hsm::ParseKeyType(res->Get(i, 2));
      if (!type.ok()) return absl::InternalError(type.status().message());
      ca.key_type = *type;
      ca.issuer = std::string(res->Get(i, 3));
      auto der = res->GetBytes(i, 4);
      if (!der.ok()) return der.status();
      ca.certificate_der = *std::move(der);
      ca.serial_hex = std::string(res->Get(i, 5));
      auto not_after = res->GetTime(i, 6);
      if (!not_after.ok()) return not_after.status();
      ca.not_after = *not_after;
      auto created = res->GetTime(i, 7);
      if (!created.ok()) return created.status();
      ca.created_at = *created;
      out.push_back(std::move(ca));
    }
    return out;
  }

  absl::Status InsertCa(const CaRecord& ca, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "INSERT INTO lifecycle.cas (name, key_id, key_type, issuer, certificate_der, "
          "serial_hex, not_after, created_at, updated_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
          {Param::Text(ca.name), Param::Text(ca.key_id), Param::Text(hsm::KeyTypeName(ca.key_type)),
           Param::Text(ca.issuer), Param::Bytes(ca.certificate_der), Param::Text(ca.serial_hex),
           Param::Time(ca.not_after), Param::Time(ca.created_at)});
      if (!res.ok()) return res.status();
      return db::AppendAudit(tx, kSchema, audit, ca.created_at);
    });
  }

  absl::Status ReplaceCaCertificate(std::string_view name, std::string_view der,
                                    std::string_view serial_hex, absl::Time not_after,
                                    absl::Time at, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE lifecycle.cas SET certificate_der = $2, serial_hex = $3, not_after = $4, "
          "updated_at = $5 WHERE name = $1",
          {Param::Text(name), Param::Bytes(der), Param::Text(serial_hex), Param::Time(not_after),
           Param::Time(at)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() != 1) {
        return absl::NotFoundError(absl::StrCat("CA ", Av(name), " does not exist"));
      }
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

 private:
  db::Pool* pool_;  // Not owned.
};

}  // namespace

std::unique_ptr<CaStore> NewPostgresCaStore(db::Pool* pool) {
  return std::make_unique<PostgresCaStore>(pool);
}

}  // namespace qsign::lifecycle
