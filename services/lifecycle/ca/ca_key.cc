#include "services/lifecycle/ca/ca_key.h"

#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include <utility>

#include "absl/status/status.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "services/lifecycle/ca/der.h"

namespace qsign::lifecycle {
namespace {

// Fetched from the providers once: EVP_sha256() and its kin make every EVP_Digest look the
// algorithm up again (a provider query under a lock per signed OCSP response). SHA-256 is the
// process-wide Sha256Md() of common/ossl.h.
const EVP_MD* DigestFor(hsm::HashAlgorithm hash) {
  static EVP_MD* const sha384 = EVP_MD_fetch(nullptr, "SHA2-384", nullptr);
  static EVP_MD* const sha512 = EVP_MD_fetch(nullptr, "SHA2-512", nullptr);
  switch (hash) {
    case hsm::HashAlgorithm::kSha256:
      return Sha256Md();
    case hsm::HashAlgorithm::kSha384:
      return sha384;
    case hsm::HashAlgorithm::kSha512:
      return sha512;
  }
  return Sha256Md();
}

}  // namespace

SignatureAlgorithm SignatureAlgorithmFor(hsm::KeyType type) {
  SignatureAlgorithm a;
  switch (type) {
    case hsm::KeyType::kEcP256:
      a.nid = NID_ecdsa_with_SHA256;
      a.oid = oid::kEcdsaWithSha256;
      a.params = {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256};
      break;
    case hsm::KeyType::kEcP384:
      a.nid = NID_ecdsa_with_SHA384;
      a.oid = oid::kEcdsaWithSha384;
      a.params = {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha384};
      break;
    case hsm::KeyType::kRsa2048:
    case hsm::KeyType::kRsa3072:
    case hsm::KeyType::kRsa4096:
      a.nid = NID_sha256WithRSAEncryption;
      a.oid = oid::kSha256WithRsa;
      a.params = {.scheme = hsm::SignScheme::kRsaPkcs1, .hash = hsm::HashAlgorithm::kSha256};
      break;
  }
  a.params.ecdsa_der = true;
  a.algorithm_identifier_der = hsm::IsEc(type) ? der::Sequence({der::Oid(a.oid)})
                                               : der::Sequence({der::Oid(a.oid), der::Null()});
  return a;
}

CaKey::CaKey(hsm::Hsm* hsm, std::string key_id, hsm::KeyType type, std::string spki_der)
    : hsm_(hsm),
      key_id_(std::move(key_id)),
      type_(type),
      spki_der_(std::move(spki_der)),
      algorithm_(SignatureAlgorithmFor(type)) {}

absl::StatusOr<std::string> CaKey::Sign(std::string_view tbs_der) const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(tbs_der.data(), tbs_der.size(), md, &md_len, DigestFor(algorithm_.params.hash),
                 nullptr) != 1) {
    return absl::InternalError("CA signing: digest failed");
  }
  return hsm_->SignDigest(key_id_, algorithm_.params,
                          std::string(reinterpret_cast<char*>(md), md_len));
}

absl::StatusOr<std::string> CaKey::SignStructure(std::string_view tbs_der,
                                                 std::string_view trailer) const {
  auto signature = Sign(tbs_der);
  if (!signature.ok()) return signature.status();
  return der::Sequence(
      {tbs_der, algorithm_.algorithm_identifier_der, der::BitString(*signature), trailer});
}

absl::Status CaKey::SetTbsSignatureAlgorithm(X509* cert) const {
  // OpenSSL 3.0 has no setter for the TBS AlgorithmIdentifier; X509_sign() writes this same
  // field through the same pointer.
  auto* alg = const_cast<X509_ALGOR*>(X509_get0_tbs_sigalg(cert));
  const int param_type = hsm::IsEc(type_) ? V_ASN1_UNDEF : V_ASN1_NULL;
  if (X509_ALGOR_set0(alg, OBJ_nid2obj(algorithm_.nid), param_type, nullptr) != 1) {
    return absl::InternalError("CA signing: cannot set the signature algorithm");
  }
  return absl::OkStatus();
}

}  // namespace qsign::lifecycle
