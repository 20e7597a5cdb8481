// hsm::KeyType <-> qsign.v1.KeyAlgorithm, for every gRPC edge that names a key algorithm.
#ifndef QSIGN_COMMON_PROTO_KEY_H_
#define QSIGN_COMMON_PROTO_KEY_H_

#include <optional>

#include "hsm/hsm.h"
#include "qsign/v1/common.pb.h"

namespace qsign {

inline qsign::v1::KeyAlgorithm ToProto(hsm::KeyType type) {
  switch (type) {
    case hsm::KeyType::kEcP256:
      return qsign::v1::KEY_ALGORITHM_EC_P256;
    case hsm::KeyType::kEcP384:
      return qsign::v1::KEY_ALGORITHM_EC_P384;
    case hsm::KeyType::kRsa2048:
      return qsign::v1::KEY_ALGORITHM_RSA_2048;
    case hsm::KeyType::kRsa3072:
      return qsign::v1::KEY_ALGORITHM_RSA_3072;
    case hsm::KeyType::kRsa4096:
      return qsign::v1::KEY_ALGORITHM_RSA_4096;
  }
  return qsign::v1::KEY_ALGORITHM_UNSPECIFIED;
}

// nullopt for UNSPECIFIED and unknown values.
inline std::optional<hsm::KeyType> KeyTypeFromProto(qsign::v1::KeyAlgorithm algorithm) {
  switch (algorithm) {
    case qsign::v1::KEY_ALGORITHM_EC_P256:
      return hsm::KeyType::kEcP256;
    case qsign::v1::KEY_ALGORITHM_EC_P384:
      return hsm::KeyType::kEcP384;
    case qsign::v1::KEY_ALGORITHM_RSA_2048:
      return hsm::KeyType::kRsa2048;
    case qsign::v1::KEY_ALGORITHM_RSA_3072:
      return hsm::KeyType::kRsa3072;
    case qsign::v1::KEY_ALGORITHM_RSA_4096:
      return hsm::KeyType::kRsa4096;
    default:
      return std::nullopt;
  }
}

}  // namespace qsign

#endif  // QSIGN_COMMON_PROTO_KEY_H_
