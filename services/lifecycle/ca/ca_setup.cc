#include "services/lifecycle/ca/ca_setup.h"

#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"

namespace qsign::lifecycle {
namespace {

enum class Kind { kRoot, kIssuing, kResponder };

struct Planned {
  std::string_view name;
  std::string_view issuer;
  Kind kind;
  std::string_view cn_suffix;
};

// In creation order: every issuer before what it issues.
constexpr Planned kPlan[] = {
    {kRootCa, kRootCa, Kind::kRoot, "Root CA"},
    {kQualifiedCa, kRootCa, Kind::kIssuing, "Qualified CA"},
    {kDeviceCa, kRootCa, Kind::kIssuing, "Device CA"},
    {kQualifiedOcsp, kQualifiedCa, Kind::kResponder, "Qualified CA OCSP Responder"},
    {kDeviceOcsp, kDeviceCa, Kind::kResponder, "Device CA OCSP Responder"},
};

absl::Time WholeSeconds(absl::Time t) { return absl::FromUnixSeconds(absl::ToUnixSeconds(t)); }

db::AuditEvent Audit(std::string action, std::string_view target, std::string details) {
  return db::AuditEvent{.actor = "qsign-ca",
                        .action = std::move(action),
                        .target = std::string(target),
                        .outcome = "ok",
                        .details = std::move(details)};
}

// The key for a new CA: generated, or left by an interrupted run (never used: no row names it).
absl::StatusOr<hsm::PublicKey> KeyFor(hsm::Hsm* hsm, const std::string& key_id, hsm::KeyType type) {
  auto pub = hsm->GetPublicKey(key_id);
  if (pub.status().code() == absl::StatusCode::kNotFound) {
    pub = hsm->GenerateKeyPair(key_id, type);
    // Another replica's init generated it in between.
    if (pub.status().code() == absl::StatusCode::kAlreadyExists) pub = hsm->GetPublicKey(key_id);
  }
  if (!pub.ok()) return pub.status();
  if (pub->type != type) {
    return absl::FailedPreconditionError(
        absl::StrCat("HSM key ", key_id, " is ", Av(hsm::KeyTypeName(pub->type)), ", configured ",
                     Av(hsm::KeyTypeName(type)), "; remove the key or change the configuration"));
  }
  return pub;
}

}  // namespace

IssuerUrls UrlsUnder(std::string_view base, std::string_view ca_name) {
  IssuerUrls urls;
  if (ca_name != kRootCa) urls.ocsp = absl::StrCat(Av(base), "/ocsp");
  urls.ca_issuers = absl::StrCat(Av(base), "/ca/", Av(ca_name), ".crt");
  urls.crl = absl::StrCat(Av(base), "/crl/", Av(ca_name), ".crl");
  return urls;
}

absl::Status CaSet::Add(hsm::Hsm* hsm, CaRecord record) {
  OsslPtr<X509> cert = ParseCertificate(record.certificate_der);
  if (cert == nullptr) {
    return absl::InternalError(absl::StrCat("CA ", record.name, ": stored certificate is not DER"));
  }
  auto pub = hsm->GetPublicKey(record.key_id);
  if (pub.status().code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError(
        absl::StrCat("CA ", record.name, ": its key ", record.key_id, " is not in the HSM"));
  }
  if (!pub.ok()) return pub.status();
  OsslPtr<EVP_PKEY> hsm_key = ParsePublicKey(pub->spki_der);
  if (hsm_key == nullptr || EVP_PKEY_eq(hsm_key.get(), X509_get0_pubkey(cert.get())) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CA ", record.name, ": HSM key ", record.key_id, " does not match its certificate"));
  }
  auto key = std::make_unique<CaKey>(hsm, record.key_id, record.key_type, pub->spki_der);
  cas_.push_back(std::make_unique<Ca>(std::move(record), std::move(cert), std::move(key)));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CaSet>> CaSet::Init(hsm::Hsm* hsm, CaStore* store,
                                                   const Clock& clock, const CaConfig& config) {
  auto set = std::unique_ptr<CaSet>(new CaSet(config));
  auto listed = store->ListCas();
  if (!listed.ok()) return listed.status();
  std::map<std::string, CaRecord, std::less<>> existing;
  for (auto& r : *listed) existing.emplace(r.name, std::move(r));

  for (const Planned& p : kPlan) {
    const absl::Time now = WholeSeconds(clock.Now());
    const Ca* issuer = p.kind == Kind::kRoot ? nullptr : set->Find(p.issuer);
    if (auto it = existing.find(p.name); it != existing.end()) {
      CaRecord record = it->second;
      if (p.kind == Kind::kResponder && record.not_after - now < config.ocsp_renew_before) {
        // Same key, new short-lived certificate.
        auto pub = hsm->GetPublicKey(record.key_id);
        if (!pub.ok()) return pub.status();
        CertificateSpec spec = OcspResponderSpec(
            absl::StrCat(config.organization, " ", Av(p.cn_suffix)), config.organization,
            config.country, pub->spki_der, RandomSerial(), now, now + config.ocsp_validity);
        auto issued = IssueCertificate(issuer->key(), issuer->cert(), spec);
        if (!issued.ok()) return issued.status();
        record.certificate_der = issued->der;
        record.serial_hex = SerialHex(issued->cert.get());
        record.not_after = spec.not_after;
        if (auto s = store->ReplaceCaCertificate(record.name, record.certificate_der,
                                                 record.serial_hex, record.not_after, now,
                                                 Audit("ca.renew_responder", record.name,
                                                       absl::StrCat("serial=", record.serial_hex)));
            !s.ok()) {
          return s;
        }
        Log(LogLevel::kInfo, "ca", "renewed OCSP responder certificate",
            {{"ca", record.name}, {"serial", record.serial_hex}});
      }
      if (auto s = set->Add(hsm, std::move(record)); !s.ok()) return s;
      continue;
    }

    const std::string key_id = absl::StrCat(config.key_id_prefix, Av(p.name));
    auto pub = KeyFor(hsm, key_id, config.key_type);
    if (!pub.ok()) return pub.status();
    const std::string cn = absl::StrCat(config.organization, " ", Av(p.cn_suffix));
    CertificateSpec spec;
    switch (p.kind) {
      case Kind::kRoot:
        spec = CaCertificateSpec(cn, config.organization, config.country, pub->spki_der,
                                 RandomSerial(), now, AddYears(now, config.root_years),
                                 std::nullopt, std::nullopt);
        break;
      case Kind::kIssuing:
        spec = CaCertificateSpec(cn, config.organization, config.country, pub->spki_der,
                                 RandomSerial(), now, AddYears(now, config.issuing_ca_years), 0,
                                 UrlsUnder(config.public_base_url, p.issuer));
        break;
      case Kind::kResponder:
        spec = OcspResponderSpec(cn, config.organization, config.country, pub->spki_der,
                                 RandomSerial(), now, now + config.ocsp_validity);
        break;
    }
    CaKey self_key(hsm, key_id, config.key_type, pub->spki_der);
    auto issued = issuer == nullptr ? IssueCertificate(self_key, nullptr, spec)
                                    : IssueCertificate(issuer->key(), issuer->cert(), spec);
    if (!issued.ok()) return issued.status();
    CaRecord record{.name = std::string(p.name),
                    .key_id = key_id,
                    .key_type = config.key_type,
                    .issuer = std::string(p.issuer),
                    .certificate_der = issued->der,
                    .serial_hex = SerialHex(issued->cert.get()),
                    .not_after = spec.not_after,
                    .created_at = now};
    auto s = store->InsertCa(
        record, Audit("ca.create", record.name,
                      absl::StrCat("key=", key_id, " type=", Av(hsm::KeyTypeName(config.key_type)),
                                   " serial=", record.serial_hex)));
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      // A concurrent init recorded it first: use theirs.
      auto again = store->ListCas();
      if (!again.ok()) return again.status();
      bool found = false;
      for (auto& r : *again) {
        if (r.name == p.name) {
          record = std::move(r);
          found = true;
        }
      }
      if (!found) return s;
    } else if (!s.ok()) {
      return s;
    } else {
      Log(LogLevel::kInfo, "ca", "created",
          {{"ca", record.name}, {"key_id", key_id}, {"serial", record.serial_hex}});
    }
    if (auto added = set->Add(hsm, std::move(record)); !added.ok()) return added;
  }
  return set;
}

absl::StatusOr<std::unique_ptr<CaSet>> CaSet::Load(hsm::Hsm* hsm, CaStore* store,
                                                   const CaConfig& config) {
  auto set = std::unique_ptr<CaSet>(new CaSet(config));
  auto listed = store->ListCas();
  if (!listed.ok()) return listed.status();
  for (const Planned& p : kPlan) {
    bool found = false;
    for (auto& r : *listed) {
      if (r.name != p.name) continue;
      found = true;
      if (auto s = set->Add(hsm, r); !s.ok()) return s;
    }
    if (!found) {
      return absl::FailedPreconditionError(
          absl::StrCat("CA ", Av(p.name), " missing: run qsign-ca init"));
    }
  }
  return set;
}

const Ca* CaSet::Find(std::string_view name) const {
  for (const auto& ca : cas_) {
    if (ca->name() == name) return ca.get();
  }
  return nullptr;
}

const Ca* CaSet::ResponderFor(std::string_view ca_name) const {
  if (ca_name == kQualifiedCa) return Find(kQualifiedOcsp);
  if (ca_name == kDeviceCa) return Find(kDeviceOcsp);
  return nullptr;
}

std::vector<const Ca*> CaSet::Issuers() const {
  return {Find(kRootCa), Find(kQualifiedCa), Find(kDeviceCa)};
}

std::vector<std::string> CaSet::ChainDer(const Ca& ca) const {
  std::vector<std::string> chain;
  const Ca* at = &ca;
  while (at != nullptr) {
    chain.push_back(at->cert_der());
    if (at->issuer_name() == at->name()) break;
    at = Find(at->issuer_name());
  }
  return chain;
}

IssuerUrls CaSet::UrlsFor(std::string_view ca_name) const {
  return UrlsUnder(config_.public_base_url, ca_name);
}

}  // namespace qsign::lifecycle
