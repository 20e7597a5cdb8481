// Detached CMS / CAdES-B signatures (RFC 5652, ETSI EN 319 122-1) whose signature value is made
// elsewhere: the signed attributes are built here, the remote signer (qsign.v1.Signer.SignHash)
// signs SHA-256 of their DER, and the signature is set into the SignerInfo. The SignerInfo's
// private key is never local.
#ifndef QSIGN_TOOLS_CLI_CMS_H_
#define QSIGN_TOOLS_CLI_CMS_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::cli {

// Signs SHA-256 `digest` (32 bytes) with the credential's key; answers the DER ECDSA or
// PKCS#1 v1.5 signature.
using RemoteSignFn = std::function<absl::StatusOr<std::string>(const std::string& digest)>;

// A DER CMS SignedData over the content whose SHA-256 is `content_sha256`, detached (no
// eContent), with signed attributes contentType, signingTime, messageDigest and
// signingCertificateV2 (RFC 5035), the signer certificate and `chain_der` (issuers, not
// needed to include the root) in certificates.
absl::StatusOr<std::string> DetachedCadesB(const std::string& content_sha256,
                                           const std::string& signer_cert_der,
                                           const std::vector<std::string>& chain_der,
                                           absl::Time signing_time, const RemoteSignFn& sign);

// SHA-256 of `data`.
std::string Sha256(std::string_view data);

// PEM ("CERTIFICATE") of a DER certificate.
absl::StatusOr<std::string> CertificatePem(const std::string& der);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_CMS_H_
