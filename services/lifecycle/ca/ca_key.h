// A CA private key in the HSM and the one way the CA signs anything with it: OpenSSL (or der.h)
// builds the to-be-signed DER, this class hashes it, the HSM signs the digest, and the signed
// structure is assembled as SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature }.
// That shape is shared by certificates, CRLs and BasicOCSPResponses, so no OpenSSL EVP_PKEY for
// an HSM key is needed.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_CA_KEY_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_CA_KEY_H_

#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::lifecycle {

// The signature algorithm a CA key of a type uses: ecdsa-with-SHA256 for P-256,
// ecdsa-with-SHA384 for P-384, sha256WithRSAEncryption (PKCS#1 v1.5) for RSA.
struct SignatureAlgorithm {
  int nid = 0;      // NID_ecdsa_with_SHA256, ...
  std::string oid;  // Dotted.
  hsm::SignParams params;
  // AlgorithmIdentifier DER: the OID, with NULL parameters for RSA (RFC 4055) and none for
  // ECDSA (RFC 5758).
  std::string algorithm_identifier_der;
};
SignatureAlgorithm SignatureAlgorithmFor(hsm::KeyType type);

class CaKey {
 public:
  // `hsm` is not owned and must outlive the key. `spki_der` is the key's public half.
  CaKey(hsm::Hsm* hsm, std::string key_id, hsm::KeyType type, std::string spki_der);

  // The signature value over `tbs_der` (DER Ecdsa-Sig-Value for ECDSA, the RSA signature block).
  absl::StatusOr<std::string> Sign(std::string_view tbs_der) const;

  // SEQUENCE { tbs_der, AlgorithmIdentifier, BIT STRING signature, trailer } where `trailer` is
  // already-encoded optional fields (BasicOCSPResponse's [0] certs).
  absl::StatusOr<std::string> SignStructure(std::string_view tbs_der,
                                            std::string_view trailer = {}) const;

  // Sets the certificate's TBS signature field to this key's algorithm (before i2d_re_X509_tbs).
  absl::Status SetTbsSignatureAlgorithm(X509* cert) const;

  const std::string& key_id() const { return key_id_; }
  hsm::KeyType type() const { return type_; }
  const std::string& spki_der() const { return spki_der_; }
  const SignatureAlgorithm& algorithm() const { return algorithm_; }

 private:
  hsm::Hsm* hsm_;  // Not owned.
  std::string key_id_;
  hsm::KeyType type_;
  std::string spki_der_;
  SignatureAlgorithm algorithm_;
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_CA_KEY_H_
