#include "services/gateway/credential_json.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/x509.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "common/proto_time.h"
#include "services/gateway/errors.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

using ::qsign::FromProto;

namespace pb = ::qsign::v1;

// RFC 4514 string, UTF-8 kept as is.
std::string DistinguishedName(const X509_NAME* name) {
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return "";
  }
  char* data = nullptr;  // Owned by bio.
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// GeneralizedTime "YYYYMMDDHHmmssZ".
std::string GeneralizedTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "";
  char buf[16];
  strftime(buf, sizeof(buf), "%Y%m%d%H%M%SZ", &tm);
  return buf;
}

absl::Status AddCertInfo(const std::string& der, Json* cert) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OsslPtr<X509> x509(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (x509 == nullptr) return absl::InternalError("credential certificate does not parse");
  OsslPtr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509.get()), nullptr));
  if (serial == nullptr) return absl::InternalError("certificate serial number");
  OsslPtr<char> hex(BN_bn2hex(serial.get()));
  if (hex == nullptr) return absl::InternalError("BN_bn2hex");
  (*cert)["serialNumber"] = std::string(hex.get());
  (*cert)["issuerDN"] = DistinguishedName(X509_get_issuer_name(x509.get()));
  (*cert)["subjectDN"] = DistinguishedName(X509_get_subject_name(x509.get()));
  (*cert)["validFrom"] = GeneralizedTime(X509_get0_notBefore(x509.get()));
  (*cert)["validTo"] = GeneralizedTime(X509_get0_notAfter(x509.get()));
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<InfoOptions> ParseInfoOptions(const Params& p) {
  InfoOptions out;
  auto certs = p.OptString("certificates", 16);
  if (!certs.ok()) return certs.status();
  if (certs->has_value()) {
    if (**certs == "none") {
      out.certificates = Certificates::kNone;
    } else if (**certs == "single") {
      out.certificates = Certificates::kSingle;
    } else if (**certs == "chain") {
      out.certificates = Certificates::kChain;
    } else {
      return InvalidParameter("certificates", "one of \"none\", \"single\", \"chain\"");
    }
  }
  auto cert_info = p.Bool("certInfo", false);
  if (!cert_info.ok()) return cert_info.status();
  out.cert_info = *cert_info;
  auto auth_info = p.Bool("authInfo", false);
  if (!auth_info.ok()) return auth_info.status();
  out.auth_info = *auth_info;
  return out;
}

absl::StatusOr<Json> CredentialJson(const pb::CredentialInfo& c, const InfoOptions& options,
                                    std::string_view lang, absl::Time now) {
  Json out = Json::object();
  const bool active = c.status() == pb::CREDENTIAL_STATUS_ACTIVE;
  out["signatureQualifier"] = "eu_eidas_qes";
  Json key = Json::object();
  key["status"] = active ? "enabled" : "disabled";
  key["algo"] = Json::array();
  for (const auto& oid : c.sign_algorithm_oids()) key["algo"].push_back(oid);
  key["len"] = c.key_bits();
  if (c.key_algorithm() == pb::KEY_ALGORITHM_EC_P256) key["curve"] = oid::kP256;
  if (c.key_algorithm() == pb::KEY_ALGORITHM_EC_P384) key["curve"] = oid::kP384;
  out["key"] = std::move(key);

  if (!c.certificate_chain_der().empty()) {
    Json cert = Json::object();
    if (c.status() == pb::CREDENTIAL_STATUS_DISABLED) {
      cert["status"] = "revoked";  // The signer disables a credential only when it is revoked.
    } else if (c.has_valid_to() && now > FromProto(c.valid_to())) {
      cert["status"] = "expired";
    } else {
      cert["status"] = "valid";
    }
    if (options.certificates != Certificates::kNone) {
      cert["certificates"] = Json::array();
      for (const auto& der : c.certificate_chain_der()) {
        cert["certificates"].push_back(EncodeBase64(der));
        if (options.certificates == Certificates::kSingle) break;
      }
    }
    if (options.cert_info) {
      if (auto s = AddCertInfo(c.certificate_chain_der(0), &cert); !s.ok()) return s;
    }
    out["cert"] = std::move(cert);
  }
  if (options.auth_info) {
    // The PIN never travels through the relying party: the owner enters it in the consent app,
    // which is what PasswordOOB (out of band) describes.
    out["auth"] = {
        {"mode", "explicit"},
        {"expression", "PIN"},
        {"objects", Json::array({{{"type", "PasswordOOB"},
                                  {"id", "PIN"},
                                  {"label", "PIN"},
                                  {"description",
                                   "Approve the request in the qsign consent app with your "
                                   "PIN"}}})}};
  } else {
    out["auth"] = {{"mode", "explicit"}};
  }
  out["SCAL"] = "2";
  out["multisign"] = std::max<uint32_t>(1, c.max_hashes_per_authorization());
  out["lang"] = lang;
  return out;
}

}  // namespace qsign::gateway
