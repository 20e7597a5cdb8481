// The qsign CA hierarchy, keys in the HSM:
//
//   root (self-signed)
//   ├── qualified   issues qualified natural-person certificates
//   │   └── qualified-ocsp   delegated OCSP responder for what "qualified" issued
//   └── device      issues the consent app's device certificates
//       └── device-ocsp      delegated OCSP responder for what "device" issued
//
// CaSet::Init creates what is missing and reuses what exists (qsign-ca init, first start);
// CaSet::Load only loads (every service start).
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_CA_SETUP_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_CA_SETUP_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/ossl.h"
#include "hsm/hsm.h"
#include "services/lifecycle/ca/ca_key.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/profile.h"

namespace qsign::lifecycle {

inline constexpr std::string_view kRootCa = "root";
inline constexpr std::string_view kQualifiedCa = "qualified";
inline constexpr std::string_view kDeviceCa = "device";
inline constexpr std::string_view kQualifiedOcsp = "qualified-ocsp";
inline constexpr std::string_view kDeviceOcsp = "device-ocsp";

struct CaConfig {
  // For keys Init generates; existing CAs keep theirs.
  hsm::KeyType key_type = hsm::KeyType::kEcP256;
  std::string organization = "qsign";
  std::string country = "RS";
  // Public HTTP base URL of the lifecycle status listener, baked into every certificate:
  // <base>/ocsp, <base>/crl/<ca>.crl, <base>/ca/<ca>.crt.
  std::string public_base_url = "http://127.0.0.1:8080";
  // HSM key ids are <prefix><ca name>.
  std::string key_id_prefix = "qsign-ca-";
  int root_years = 20;
  int issuing_ca_years = 10;
  // OCSP responder certificates are short-lived (they carry ocsp-nocheck); Init issues a new one
  // for the same key when less than `ocsp_renew_before` is left.
  absl::Duration ocsp_validity = absl::Hours(24 * 365);
  absl::Duration ocsp_renew_before = absl::Hours(24 * 30);
};

// One CA (or responder) as loaded: its key in the HSM and its certificate.
class Ca {
 public:
  Ca(CaRecord record, OsslPtr<X509> cert, std::unique_ptr<CaKey> key)
      : record_(std::move(record)), cert_(std::move(cert)), key_(std::move(key)) {}

  const std::string& name() const { return record_.name; }
  const std::string& issuer_name() const { return record_.issuer; }
  const CaKey& key() const { return *key_; }
  const X509* cert() const { return cert_.get(); }
  const std::string& cert_der() const { return record_.certificate_der; }
  const CaRecord& record() const { return record_; }

 private:
  CaRecord record_;
  OsslPtr<X509> cert_;
  std::unique_ptr<CaKey> key_;
};

class CaSet {
 public:
  // Creates the missing CAs and responders in order, reusing existing rows (and an HSM key left
  // by an interrupted run), and renews responder certificates near expiry. `hsm` and `store`
  // are not owned and must outlive the set.
  static absl::StatusOr<std::unique_ptr<CaSet>> Init(hsm::Hsm* hsm, CaStore* store,
                                                     const Clock& clock, const CaConfig& config);
  // FAILED_PRECONDITION "run qsign-ca init" when anything is missing; also checks that every
  // HSM key matches its certificate.
  static absl::StatusOr<std::unique_ptr<CaSet>> Load(hsm::Hsm* hsm, CaStore* store,
                                                     const CaConfig& config);

  // nullptr when unknown.
  const Ca* Find(std::string_view name) const;
  const Ca& root() const { return *Find(kRootCa); }
  const Ca& qualified() const { return *Find(kQualifiedCa); }
  const Ca& device() const { return *Find(kDeviceCa); }
  // The delegated responder for what `ca` issued; nullptr for the root.
  const Ca* ResponderFor(std::string_view ca_name) const;
  // The CAs that issue end-entity certificates and CRLs (root, qualified, device).
  std::vector<const Ca*> Issuers() const;

  // `ca`'s certificate, then its issuers up to the root.
  std::vector<std::string> ChainDer(const Ca& ca) const;
  // What certificates issued by `ca_name` carry in AIA and CRL DP.
  IssuerUrls UrlsFor(std::string_view ca_name) const;
  const CaConfig& config() const { return config_; }

 private:
  explicit CaSet(CaConfig config) : config_(std::move(config)) {}
  absl::Status Add(hsm::Hsm* hsm, CaRecord record);

  CaConfig config_;
  std::vector<std::unique_ptr<Ca>> cas_;
};

// IssuerUrls for certificates issued by `ca_name` under `public_base_url`.
IssuerUrls UrlsUnder(std::string_view public_base_url, std::string_view ca_name);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_CA_SETUP_H_
