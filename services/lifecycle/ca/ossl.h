// Owning handles for the OpenSSL objects the CA uses: every one is freed by its typed deleter.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_OSSL_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_OSSL_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

namespace qsign::lifecycle {

#define QSIGN_LIFECYCLE_OSSL_PTR(alias, type, free_fn) \
  struct alias##Deleter {                              \
    void operator()(type* p) const { free_fn(p); }     \
  };                                                   \
  using alias = std::unique_ptr<type, alias##Deleter>

QSIGN_LIFECYCLE_OSSL_PTR(X509Ptr, X509, X509_free);
QSIGN_LIFECYCLE_OSSL_PTR(X509NamePtr, X509_NAME, X509_NAME_free);
QSIGN_LIFECYCLE_OSSL_PTR(X509ExtensionPtr, X509_EXTENSION, X509_EXTENSION_free);
QSIGN_LIFECYCLE_OSSL_PTR(X509CrlPtr, X509_CRL, X509_CRL_free);
QSIGN_LIFECYCLE_OSSL_PTR(X509AlgorPtr, X509_ALGOR, X509_ALGOR_free);
QSIGN_LIFECYCLE_OSSL_PTR(EvpPkeyPtr, EVP_PKEY, EVP_PKEY_free);
QSIGN_LIFECYCLE_OSSL_PTR(Asn1ObjectPtr, ASN1_OBJECT, ASN1_OBJECT_free);
QSIGN_LIFECYCLE_OSSL_PTR(Asn1OctetStringPtr, ASN1_OCTET_STRING, ASN1_OCTET_STRING_free);
QSIGN_LIFECYCLE_OSSL_PTR(Asn1IntegerPtr, ASN1_INTEGER, ASN1_INTEGER_free);
QSIGN_LIFECYCLE_OSSL_PTR(Asn1TimePtr, ASN1_TIME, ASN1_TIME_free);
QSIGN_LIFECYCLE_OSSL_PTR(BignumPtr, BIGNUM, BN_free);
QSIGN_LIFECYCLE_OSSL_PTR(BioPtr, BIO, BIO_free_all);
QSIGN_LIFECYCLE_OSSL_PTR(OcspRequestPtr, OCSP_REQUEST, OCSP_REQUEST_free);
QSIGN_LIFECYCLE_OSSL_PTR(OcspResponsePtr, OCSP_RESPONSE, OCSP_RESPONSE_free);
QSIGN_LIFECYCLE_OSSL_PTR(OcspBasicRespPtr, OCSP_BASICRESP, OCSP_BASICRESP_free);
QSIGN_LIFECYCLE_OSSL_PTR(OcspCertIdPtr, OCSP_CERTID, OCSP_CERTID_free);
QSIGN_LIFECYCLE_OSSL_PTR(OpensslString, char, OPENSSL_free);

#undef QSIGN_LIFECYCLE_OSSL_PTR

inline const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// d2i that must consume all of `der`; nullptr otherwise.
inline X509Ptr ParseCertificate(std::string_view der) {
  const unsigned char* p = Bytes(der);
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr || p != Bytes(der) + der.size()) return nullptr;
  return cert;
}

inline EvpPkeyPtr ParsePublicKey(std::string_view spki_der) {
  const unsigned char* p = Bytes(spki_der);
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (key == nullptr || p != Bytes(spki_der) + spki_der.size()) return nullptr;
  return key;
}

// i2d of any OpenSSL object into a string; empty on failure.
template <typename T, typename F>
std::string ToDer(T* obj, F i2d) {
  unsigned char* buf = nullptr;
  const int len = i2d(obj, &buf);
  if (len <= 0) return "";
  std::string out(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return out;
}

// The subjectKeyIdentifier's bytes; empty when the certificate has none.
inline std::string SubjectKeyId(const X509* cert) {
  // OpenSSL 3.0 takes a non-const X509 here because it caches the parsed extensions.
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(const_cast<X509*>(cert));
  if (ski == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski)),
                     static_cast<size_t>(ASN1_STRING_length(ski)));
}

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_OSSL_H_
