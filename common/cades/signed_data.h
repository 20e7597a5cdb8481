// CMS SignedData (RFC 5652) whose signature value is made elsewhere — by the remote signer
// (qsign.v1.Signer.SignHash, approved by the user) or by an HSM key (the TSA): the signed
// attributes are built here (CAdES-B-B, ETSI EN 319 122-1), the caller signs SHA-256 of their
// DER, and the signature is set into the SignerInfo. No private key is ever local.
// Used by the CLI (CAdES), the TSA (the TimeStampToken is a SignedData over TSTInfo) and PAdES.
#ifndef QSIGN_COMMON_CADES_SIGNED_DATA_H_
#define QSIGN_COMMON_CADES_SIGNED_DATA_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ossl.h"

namespace qsign::cades {

// id-data, the eContentType of a detached signature over a file or a PDF byte range.
inline constexpr char kIdData[] = "1.2.840.113549.1.7.1";
// id-ct-TSTInfo (RFC 3161), the eContentType of a TimeStampToken.
inline constexpr char kIdCtTstInfo[] = "1.2.840.113549.1.9.16.1.4";

// Signs SHA-256 `digest` (32 bytes) of the DER signed attributes; answers the DER ECDSA
// (Ecdsa-Sig-Value) or PKCS#1 v1.5 signature made with the signer certificate's key.
using RemoteSignFn = std::function<absl::StatusOr<std::string>(const std::string& digest)>;

struct SignerInput {
  // SHA-256 of the content (the messageDigest attribute), 32 bytes.
  std::string content_sha256;
  // The signer's certificate (DER); its key type fixes the signature algorithm.
  std::string signer_cert_der;
  // Issuer certificates (DER) to put into SignedData.certificates (the root may be left out).
  std::vector<std::string> chain_der;
  // The signingTime attribute; nullopt leaves it out (PAdES: the time is the PDF's /M).
  std::optional<absl::Time> signing_time;
  // eContentType, dotted (kIdData, kIdCtTstInfo).
  std::string content_type_oid = kIdData;
  // Encapsulated content (eContent), e.g. the DER TSTInfo of a timestamp; empty: detached.
  std::string encapsulated_content;
  // False: no certificate at all in SignedData.certificates (RFC 3161 certReq false).
  bool include_certificates = true;
};

// A SignedData whose signed attributes are fixed and whose signature value is still missing:
// sign to_be_signed() (SHA-256 of the DER signed attributes) anywhere, then Finish. Lets a
// caller collect the hashes of many documents for one approval (CSC signDoc batches).
class PreparedSignature {
 public:
  static absl::StatusOr<std::unique_ptr<PreparedSignature>> New(const SignerInput& input);
  ~PreparedSignature();

  // SHA-256 of the DER SET OF signed attributes: the hash the user approves and the key signs.
  const std::string& to_be_signed() const { return to_be_signed_; }
  // The DER ContentInfo with `signature` (DER ECDSA or PKCS#1 v1.5) as the signature value.
  absl::StatusOr<std::string> Finish(const std::string& signature);

 private:
  struct State;
  PreparedSignature(std::unique_ptr<State> state, std::string to_be_signed);
  std::unique_ptr<State> state_;
  std::string to_be_signed_;
};

// Prepare + sign + Finish in one call.
absl::StatusOr<std::string> Sign(const SignerInput& input, const RemoteSignFn& sign);

// SHA-256 of `data` (common/ossl.h).
using ::qsign::Sha256;

// PEM ("CERTIFICATE") of a DER certificate.
absl::StatusOr<std::string> CertificatePem(const std::string& der);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_SIGNED_DATA_H_
