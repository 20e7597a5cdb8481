#include "hsm/key_encoding.h"

#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::hsm {
namespace {

// OID 1.2.840.10045.3.1.7 (prime256v1) and 1.3.132.0.34 (secp384r1), DER.
constexpr char kP256ParamsDer[] = "\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07";
constexpr char kP384ParamsDer[] = "\x06\x05\x2b\x81\x04\x00\x22";

// DigestInfo prefixes from RFC 8017 section 9.2, note 1.
constexpr char kSha256Prefix[] =
    "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20";
constexpr char kSha384Prefix[] =
    "\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30";
constexpr char kSha512Prefix[] =
    "\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40";

// A DER length: short form below 128, else the long form with as few bytes as it needs.
void AppendDerLength(size_t length, std::string* out) {
  if (length < 0x80) {
    out->push_back(static_cast<char>(length));
    return;
  }
  char bytes[sizeof(size_t)];
  size_t count = 0;
  for (; length > 0; length >>= 8) bytes[count++] = static_cast<char>(length & 0xff);
  out->push_back(static_cast<char>(0x80 | count));
  while (count > 0) out->push_back(bytes[--count]);
}

size_t EcCoordinateLength(KeyType type) { return type == KeyType::kEcP256 ? 32 : 48; }

absl::StatusOr<std::string> PublicKeyToSpki(const char* algorithm, const OSSL_PARAM* params) {
  OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return absl::InternalError(absl::StrCat("cannot set up OpenSSL ", algorithm, " key import"));
  }
  EVP_PKEY* raw_key = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY,
                        const_cast<OSSL_PARAM*>(params)) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token returned a ", algorithm, " public key OpenSSL rejects"));
  }
  OsslPtr<EVP_PKEY> key(raw_key);
  int len = i2d_PUBKEY(key.get(), nullptr);
  if (len <= 0) return absl::InternalError("cannot encode SubjectPublicKeyInfo");
  std::string der(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_PUBKEY(key.get(), &out) != len) {
    return absl::InternalError("cannot encode SubjectPublicKeyInfo");
  }
  return der;
}

}  // namespace

std::string_view EcParamsDer(KeyType type) {
  if (type == KeyType::kEcP256) return {kP256ParamsDer, sizeof(kP256ParamsDer) - 1};
  return {kP384ParamsDer, sizeof(kP384ParamsDer) - 1};
}

absl::StatusOr<KeyType> EcKeyTypeFromParams(std::string_view ec_params_der) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384}) {
    if (ec_params_der == EcParamsDer(type)) return type;
  }
  return absl::InvalidArgumentError("EC key on a curve other than P-256 or P-384");
}

absl::StatusOr<std::string> UnwrapEcPoint(KeyType type, std::string_view ec_point_attribute) {
  const size_t point_len = 1 + 2 * EcCoordinateLength(type);
  std::string point;
  const auto* in = reinterpret_cast<const unsigned char*>(ec_point_attribute.data());
  OsslPtr<ASN1_OCTET_STRING> octets(
      d2i_ASN1_OCTET_STRING(nullptr, &in, static_cast<long>(ec_point_attribute.size())));
  if (octets != nullptr && in == reinterpret_cast<const unsigned char*>(ec_point_attribute.data()) +
                                     ec_point_attribute.size()) {
    point.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(octets.get())),
                 static_cast<size_t>(ASN1_STRING_length(octets.get())));
  } else {
    point.assign(ec_point_attribute);
  }
  if (point.size() != point_len || point[0] != '\x04') {
    return absl::InvalidArgumentError(
        absl::StrCat("CKA_EC_POINT is not an uncompressed ", Av(KeyTypeName(type)), " point"));
  }
  return point;
}

absl::StatusOr<std::string> EcSpkiDer(KeyType type, std::string_view uncompressed_point) {
  if (!IsEc(type)) return absl::InvalidArgumentError("EcSpkiDer needs an EC key type");
  OsslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  const char* group = type == KeyType::kEcP256 ? SN_X9_62_prime256v1 : SN_secp384r1;
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                       uncompressed_point.data(), uncompressed_point.size()) != 1) {
    return absl::InternalError("cannot build OpenSSL EC parameters");
  }
  OsslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (params == nullptr) return absl::InternalError("cannot build OpenSSL EC parameters");
  return PublicKeyToSpki("EC", params.get());
}

absl::StatusOr<std::string> RsaSpkiDer(std::string_view modulus, std::string_view exponent) {
  OsslPtr<BIGNUM> n(BN_bin2bn(reinterpret_cast<const unsigned char*>(modulus.data()),
                              static_cast<int>(modulus.size()), nullptr));
  OsslPtr<BIGNUM> e(BN_bin2bn(reinterpret_cast<const unsigned char*>(exponent.data()),
                              static_cast<int>(exponent.size()), nullptr));
  OsslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (n == nullptr || e == nullptr || bld == nullptr ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return absl::InternalError("cannot build OpenSSL RSA parameters");
  }
  OsslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (params == nullptr) return absl::InternalError("cannot build OpenSSL RSA parameters");
  return PublicKeyToSpki("RSA", params.get());
}

std::string DigestInfoDer(HashAlgorithm hash, std::string_view digest) {
  std::string_view prefix;
  switch (hash) {
    case HashAlgorithm::kSha256:
      prefix = {kSha256Prefix, sizeof(kSha256Prefix) - 1};
      break;
    case HashAlgorithm::kSha384:
      prefix = {kSha384Prefix, sizeof(kSha384Prefix) - 1};
      break;
    case HashAlgorithm::kSha512:
      prefix = {kSha512Prefix, sizeof(kSha512Prefix) - 1};
      break;
  }
  return absl::StrCat(Av(prefix), Av(digest));
}

absl::StatusOr<std::string> EcdsaRawToDer(std::string_view raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return absl::InvalidArgumentError("ECDSA signature r||s has odd or zero length");
  }
  // Written directly (no BIGNUM, no ECDSA_SIG): this runs once per signature on the signing path.
  const std::string_view halves[] = {raw.substr(0, raw.size() / 2), raw.substr(raw.size() / 2)};
  std::string integers;
  integers.reserve(raw.size() + 12);
  for (std::string_view n : halves) {
    // DER INTEGER of an unsigned magnitude: minimal (leading zero bytes dropped, one kept for
    // zero), and a zero byte in front when the top bit is set, so that it stays positive.
    while (n.size() > 1 && n.front() == '\0') n.remove_prefix(1);
    const bool pad = (static_cast<unsigned char>(n.front()) & 0x80) != 0;
    integers.push_back('\x02');
    AppendDerLength(n.size() + (pad ? 1 : 0), &integers);
    if (pad) integers.push_back('\0');
    integers.append(n);
  }
  std::string der;
  der.reserve(integers.size() + 6);
  der.push_back('\x30');
  AppendDerLength(integers.size(), &der);
  der.append(integers);
  return der;
}

}  // namespace qsign::hsm
