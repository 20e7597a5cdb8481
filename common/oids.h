// Every object identifier qsign speaks, once: hash and signature algorithms (CSC
// hashAlgorithmOID / signAlgo, the signer, the gateway, the CLI), curves, and the X.509, PKIX and
// ETSI identifiers of the CA's certificate profiles. Dotted strings, as they travel in the APIs.
#ifndef QSIGN_COMMON_OIDS_H_
#define QSIGN_COMMON_OIDS_H_

#include <cstddef>
#include <span>
#include <string_view>

namespace qsign::oid {

// Hash algorithms (NIST, RFC 5758).
inline constexpr char kSha256[] = "2.16.840.1.101.3.4.2.1";
inline constexpr char kSha384[] = "2.16.840.1.101.3.4.2.2";
inline constexpr char kSha512[] = "2.16.840.1.101.3.4.2.3";

// Signature algorithms (RFC 5758, RFC 8017).
inline constexpr char kEcdsaWithSha256[] = "1.2.840.10045.4.3.2";
inline constexpr char kEcdsaWithSha384[] = "1.2.840.10045.4.3.3";
inline constexpr char kEcdsaWithSha512[] = "1.2.840.10045.4.3.4";
inline constexpr char kEcPublicKey[] = "1.2.840.10045.2.1";  // ECDSA, hash named separately.
inline constexpr char kSha256WithRsa[] = "1.2.840.113549.1.1.11";
inline constexpr char kSha384WithRsa[] = "1.2.840.113549.1.1.12";
inline constexpr char kSha512WithRsa[] = "1.2.840.113549.1.1.13";
inline constexpr char kRsaEncryption[] = "1.2.840.113549.1.1.1";  // PKCS#1 v1.5, hash separate.
inline constexpr char kRsassaPss[] = "1.2.840.113549.1.1.10";     // Salt = hash length.

// Named curves.
inline constexpr char kP256[] = "1.2.840.10045.3.1.7";
inline constexpr char kP384[] = "1.3.132.0.34";

// X.509 extensions (RFC 5280).
inline constexpr char kSubjectKeyIdentifier[] = "2.5.29.14";
inline constexpr char kKeyUsage[] = "2.5.29.15";
inline constexpr char kSubjectAltName[] = "2.5.29.17";
inline constexpr char kBasicConstraints[] = "2.5.29.19";
inline constexpr char kCrlNumber[] = "2.5.29.20";
inline constexpr char kCrlReason[] = "2.5.29.21";
inline constexpr char kCrlDistributionPoints[] = "2.5.29.31";
inline constexpr char kCertificatePolicies[] = "2.5.29.32";
inline constexpr char kAnyPolicy[] = "2.5.29.32.0";
inline constexpr char kAuthorityKeyIdentifier[] = "2.5.29.35";
inline constexpr char kExtKeyUsage[] = "2.5.29.37";

// PKIX (RFC 5280, RFC 6960).
inline constexpr char kAuthorityInfoAccess[] = "1.3.6.1.5.5.7.1.1";
inline constexpr char kQcStatements[] = "1.3.6.1.5.5.7.1.3";
inline constexpr char kOcsp[] = "1.3.6.1.5.5.7.48.1";
inline constexpr char kOcspBasic[] = "1.3.6.1.5.5.7.48.1.1";
inline constexpr char kOcspNoCheck[] = "1.3.6.1.5.5.7.48.1.5";
inline constexpr char kCaIssuers[] = "1.3.6.1.5.5.7.48.2";
inline constexpr char kOcspSigning[] = "1.3.6.1.5.5.7.3.9";
inline constexpr char kTimeStamping[] = "1.3.6.1.5.5.7.3.8";

// ETSI EN 319 412-5 QCStatements.
inline constexpr char kQcCompliance[] = "0.4.0.1862.1.1";
inline constexpr char kQcSscd[] = "0.4.0.1862.1.4";
inline constexpr char kQcPds[] = "0.4.0.1862.1.5";
inline constexpr char kQcType[] = "0.4.0.1862.1.6";
inline constexpr char kQcTypeEsign[] = "0.4.0.1862.1.6.1";
// RFC 3739 id-qcs-pkixQCSyntax-v2 carrying the ETSI EN 319 412-1 semantics identifier of the
// subject's serialNumber: id-etsi-qcs-semanticsId-Natural.
inline constexpr char kPkixQcSyntaxV2[] = "1.3.6.1.5.5.7.11.2";
inline constexpr char kSemanticsIdNatural[] = "0.4.0.194121.1.1";
// ETSI EN 319 411-2 QCP-n-qscd.
// ETSI EN 319 421 best-practices time-stamp policy (the TSA's default policy).
inline constexpr char kBaselineTsPolicy[] = "0.4.0.2023.1.1";
inline constexpr char kQcpNQscd[] = "0.4.0.194112.1.2";

// The hash algorithms qsign accepts, and their digest length in bytes.
struct HashOid {
  const char* oid;
  size_t length;
};

enum class SignFamily { kEcdsa, kRsaPkcs1, kRsaPss };

// The signature algorithms qsign accepts (CSC signAlgo), EC ones first, each family's preferred
// one first.
struct SignOid {
  const char* oid;
  SignFamily family;
  const char* implied_hash;  // nullptr: the request names the hash (hashAlgorithmOID).
};

std::span<const HashOid> HashOids();
std::span<const SignOid> SignOids();

// nullptr when `oid` is not one qsign accepts.
const HashOid* FindHashOid(std::string_view oid);
const SignOid* FindSignOid(std::string_view oid);

}  // namespace qsign::oid

#endif  // QSIGN_COMMON_OIDS_H_
