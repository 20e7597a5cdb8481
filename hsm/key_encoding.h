// Byte formats between the token and the rest of qsign: SubjectPublicKeyInfo from PKCS#11 public
// key attributes, PKCS#1 DigestInfo, ECDSA r||s <-> DER. Pure functions; no PKCS#11 calls.
#ifndef QSIGN_HSM_KEY_ENCODING_H_
#define QSIGN_HSM_KEY_ENCODING_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::hsm {

// DER of the namedCurve OID that is CKA_EC_PARAMS for an EC key type.
std::string_view EcParamsDer(KeyType type);

// The EC key type whose CKA_EC_PARAMS these are; INVALID_ARGUMENT for other curves.
absl::StatusOr<KeyType> EcKeyTypeFromParams(std::string_view ec_params_der);

// The uncompressed point from CKA_EC_POINT, which PKCS#11 defines as a DER OCTET STRING
// (SoftHSM2 follows that); a bare point of the right size is accepted too.
absl::StatusOr<std::string> UnwrapEcPoint(KeyType type, std::string_view ec_point_attribute);

// SubjectPublicKeyInfo DER for an uncompressed EC point on the curve of `type`.
absl::StatusOr<std::string> EcSpkiDer(KeyType type, std::string_view uncompressed_point);

// SubjectPublicKeyInfo DER for an RSA key given big-endian modulus and public exponent.
absl::StatusOr<std::string> RsaSpkiDer(std::string_view modulus, std::string_view exponent);

// DER DigestInfo { AlgorithmIdentifier(hash, NULL), OCTET STRING digest }. The digest length must
// already have been checked.
std::string DigestInfoDer(HashAlgorithm hash, std::string_view digest);

// Ecdsa-Sig-Value DER from the PKCS#11 r||s form (two equal halves).
absl::StatusOr<std::string> EcdsaRawToDer(std::string_view raw);

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_KEY_ENCODING_H_
