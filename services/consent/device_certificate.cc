#include "services/consent/device_certificate.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/ossl.h"

namespace qsign::consent {
namespace {

OsslPtr<X509> ParseCert(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert && p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) cert.reset();
  return cert;
}

OsslPtr<EVP_PKEY> ParseSpki(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return OsslPtr<EVP_PKEY>(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
}

void AppendDerLength(size_t len, std::string* out) {
  if (len < 0x80) {
    out->push_back(static_cast<char>(len));
    return;
  }
  std::string bytes;
  for (size_t v = len; v > 0; v >>= 8) bytes.insert(bytes.begin(), static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(0x80 | bytes.size()));
  out->append(bytes);
}

std::string DerTagged(uint8_t tag, std::string_view content) {
  std::string out(1, static_cast<char>(tag));
  AppendDerLength(content.size(), &out);
  out.append(content);
  return out;
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  OsslPtr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(absl::StrCat("device certificate: extension ", OBJ_nid2sn(nid)));
  }
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return absl::InternalError("no randomness");
  serial[0] &= 0x7f;  // Positive, and at most 16 bytes encoded (RFC 5280: at most 20).
  OsslPtr<BIGNUM> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return absl::InternalError("device certificate: serial");
  }
  return absl::OkStatus();
}

// Signs `cert`'s TBS with the HSM key (ECDSA P-256, SHA-256) and answers the certificate DER.
absl::StatusOr<std::string> SignWithHsm(hsm::Hsm* hsm, std::string_view key_id, X509* cert) {
  // The TBS names the signature algorithm too; set it before encoding.
  auto* tbs_alg = const_cast<X509_ALGOR*>(X509_get0_tbs_sigalg(cert));
  if (X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, nullptr) != 1) {
    return absl::InternalError("device certificate: signature algorithm");
  }
  unsigned char* tbs_raw = nullptr;
  const int tbs_len = i2d_re_X509_tbs(cert, &tbs_raw);
  if (tbs_len <= 0) return absl::InternalError("device certificate: TBS encoding");
  OsslPtr<unsigned char> tbs(tbs_raw);
  unsigned char* alg_raw = nullptr;
  const int alg_len = i2d_X509_ALGOR(tbs_alg, &alg_raw);
  if (alg_len <= 0) return absl::InternalError("device certificate: algorithm encoding");
  OsslPtr<unsigned char> alg(alg_raw);

  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(tbs.get(), static_cast<size_t>(tbs_len), reinterpret_cast<unsigned char*>(digest.data()));
  auto sig = hsm->SignDigest(
      key_id,
      {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256, .ecdsa_der = true},
      std::move(digest));
  if (!sig.ok()) return sig.status();

  std::string body(reinterpret_cast<const char*>(tbs.get()), static_cast<size_t>(tbs_len));
  body.append(reinterpret_cast<const char*>(alg.get()), static_cast<size_t>(alg_len));
  body += DerTagged(0x03, std::string(1, '\0') + *sig);  // BIT STRING, no unused bits.
  std::string der = DerTagged(0x30, body);
  if (!ParseCert(der)) return absl::InternalError("device certificate: result does not parse");
  return der;
}

absl::Status SetValidity(X509* cert, absl::Time from, absl::Time to) {
  if (ASN1_TIME_set(X509_getm_notBefore(cert), absl::ToTimeT(from)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert), absl::ToTimeT(to)) == nullptr) {
    return absl::InternalError("device certificate: validity");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HsmDeviceCertificateIssuer>> HsmDeviceCertificateIssuer::New(
    hsm::Hsm* hsm, std::string ca_key_id, std::string ca_certificate_der, absl::Duration validity) {
  OsslPtr<X509> ca = ParseCert(ca_certificate_der);
  if (!ca) return absl::InvalidArgumentError("device CA certificate: not a DER certificate");
  auto pub = hsm->GetPublicKey(ca_key_id);
  if (!pub.ok()) return pub.status();
  if (pub->type != hsm::KeyType::kEcP256) {
    return absl::InvalidArgumentError("device CA key: must be EC P-256");
  }
  OsslPtr<EVP_PKEY> key = ParseSpki(pub->spki_der);
  if (!key || EVP_PKEY_eq(X509_get0_pubkey(ca.get()), key.get()) != 1) {
    return absl::InvalidArgumentError("device CA certificate: not for the device CA key");
  }
  return std::unique_ptr<HsmDeviceCertificateIssuer>(new HsmDeviceCertificateIssuer(
      hsm, std::move(ca_key_id), std::move(ca_certificate_der), validity));
}

absl::StatusOr<std::vector<std::string>> HsmDeviceCertificateIssuer::Issue(
    const DeviceCertificateRequest& req) {
  OsslPtr<X509> ca = ParseCert(ca_cert_der_);
  OsslPtr<EVP_PKEY> device_key = ParseSpki(req.public_key_spki);
  if (!ca || !device_key) return absl::InternalError("device certificate: bad inputs");
  OsslPtr<X509> cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) {
    return absl::InternalError("device certificate: allocation");
  }
  if (auto s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (auto s = SetValidity(cert.get(), req.now - absl::Minutes(5), req.now + validity_); !s.ok()) {
    return s;
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());  // Owned by cert.
  auto add = [&](int nid, const std::string& value) {
    return X509_NAME_add_entry_by_NID(subject, nid, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add(NID_commonName, req.device_name) || !add(NID_serialNumber, req.device_id) ||
      !add(NID_userId, req.account_id)) {
    return absl::InternalError("device certificate: subject");
  }
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get())) != 1 ||
      X509_set_pubkey(cert.get(), device_key.get()) != 1) {
    return absl::InternalError("device certificate: issuer or key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            std::pair{NID_key_usage, "critical,digitalSignature"},
                            std::pair{NID_subject_key_identifier, "hash"},
                            std::pair{NID_authority_key_identifier, "keyid:always"}}) {
    if (auto s = AddExtension(cert.get(), &ctx, nid, value); !s.ok()) return s;
  }
  auto der = SignWithHsm(hsm_, ca_key_id_, cert.get());
  if (!der.ok()) return der.status();
  return std::vector<std::string>{*std::move(der), ca_cert_der_};
}

absl::StatusOr<std::string> SelfSignedDeviceCaCertificate(hsm::Hsm* hsm, std::string_view ca_key_id,
                                                          std::string_view common_name,
                                                          absl::Time now) {
  auto pub = hsm->GetPublicKey(ca_key_id);
  if (!pub.ok()) return pub.status();
  if (pub->type != hsm::KeyType::kEcP256) {
    return absl::InvalidArgumentError("device CA key: must be EC P-256");
  }
  OsslPtr<EVP_PKEY> key = ParseSpki(pub->spki_der);
  OsslPtr<X509> cert(X509_new());
  if (!key || !cert || X509_set_version(cert.get(), 2) != 1) {
    return absl::InternalError("device CA certificate: allocation");
  }
  if (auto s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (auto s = SetValidity(cert.get(), now - absl::Minutes(5), now + absl::Hours(24 * 3650));
      !s.ok()) {
    return s;
  }
  X509_NAME* name = X509_get_subject_name(cert.get());  // Owned by cert.
  const std::string cn(common_name);
  if (X509_NAME_add_entry_by_NID(name, NID_countryName, MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("RS"), 2, -1, 0) != 1 ||
      X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.data()),
                                 static_cast<int>(cn.size()), -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key.get()) != 1) {
    return absl::InternalError("device CA certificate: names or key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto s = AddExtension(cert.get(), &ctx, nid, value); !s.ok()) return s;
  }
  return SignWithHsm(hsm, ca_key_id, cert.get());
}

}  // namespace qsign::consent
