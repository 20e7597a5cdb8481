// Owning handles for OpenSSL objects: OsslPtr<X509> frees with X509_free, and so on for every
// type the tree owns. A type without an OsslDeleter overload does not compile, so a handle
// can never be freed by the wrong function.
#ifndef QSIGN_COMMON_OSSL_H_
#define QSIGN_COMMON_OSSL_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace qsign {

// One overload per type the tree owns; OsslPtr<T> of any other type does not compile.
struct OsslDeleter {
  // Keys, contexts and parameters.
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
  void operator()(EVP_MD* p) const { EVP_MD_free(p); }
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
  // ASN1_INTEGER, ASN1_ENUMERATED, ASN1_TIME, ASN1_OCTET_STRING and ASN1_IA5STRING are all
  // ASN1_STRING, so this one overload covers them.
  void operator()(ASN1_STRING* p) const { ASN1_STRING_free(p); }
  void operator()(ASN1_OBJECT* p) const { ASN1_OBJECT_free(p); }
  // Frees the whole chain; for a single BIO the same as BIO_free.
  void operator()(BIO* p) const { BIO_free_all(p); }
  // Memory OpenSSL allocated for us: i2d output, BN_bn2hex / i2s_ASN1_INTEGER strings.
  void operator()(char* p) const { OPENSSL_free(p); }
  void operator()(unsigned char* p) const { OPENSSL_free(p); }
  // Certificates, CRLs, OCSP and CMS.
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
  void operator()(X509_ALGOR* p) const { X509_ALGOR_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(OCSP_REQUEST* p) const { OCSP_REQUEST_free(p); }
  void operator()(OCSP_RESPONSE* p) const { OCSP_RESPONSE_free(p); }
  void operator()(OCSP_BASICRESP* p) const { OCSP_BASICRESP_free(p); }
  void operator()(OCSP_CERTID* p) const { OCSP_CERTID_free(p); }
  void operator()(CMS_ContentInfo* p) const { CMS_ContentInfo_free(p); }
  void operator()(ESS_SIGNING_CERT_V2* p) const { ESS_SIGNING_CERT_V2_free(p); }
  void operator()(PKCS7* p) const { PKCS7_free(p); }
  // RFC 3161 messages.
  void operator()(TS_REQ* p) const { TS_REQ_free(p); }
  void operator()(TS_RESP* p) const { TS_RESP_free(p); }
  void operator()(TS_MSG_IMPRINT* p) const { TS_MSG_IMPRINT_free(p); }
  void operator()(TS_TST_INFO* p) const { TS_TST_INFO_free(p); }
  void operator()(TS_ACCURACY* p) const { TS_ACCURACY_free(p); }
  void operator()(GENERAL_NAME* p) const { GENERAL_NAME_free(p); }
  // Stacks. These own their elements and free them with the stack...
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
  void operator()(STACK_OF(X509_CRL) * p) const { sk_X509_CRL_pop_free(p, X509_CRL_free); }
  void operator()(STACK_OF(X509_NAME) * p) const { sk_X509_NAME_pop_free(p, X509_NAME_free); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(AUTHORITY_INFO_ACCESS* p) const { AUTHORITY_INFO_ACCESS_free(p); }
  void operator()(CRL_DIST_POINTS* p) const { CRL_DIST_POINTS_free(p); }
  // ...this one only borrows them (attributes owned by a CMS_SignerInfo).
  void operator()(STACK_OF(X509_ATTRIBUTE) * p) const { sk_X509_ATTRIBUTE_free(p); }
};

template <typename T>
using OsslPtr = std::unique_ptr<T, OsslDeleter>;

inline const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// d2i that must consume all of `der`; nullptr otherwise.
inline OsslPtr<X509> ParseCertificate(std::string_view der) {
  const unsigned char* p = Bytes(der);
  OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr || p != Bytes(der) + der.size()) return nullptr;
  return cert;
}

// A SubjectPublicKeyInfo that must consume all of `spki_der`; nullptr otherwise.
inline OsslPtr<EVP_PKEY> ParsePublicKey(std::string_view spki_der) {
  const unsigned char* p = Bytes(spki_der);
  OsslPtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (key == nullptr || p != Bytes(spki_der) + spki_der.size()) return nullptr;
  return key;
}

// i2d of any OpenSSL object into a string; empty on failure.
template <typename T, typename F>
std::string ToDer(T* obj, F i2d) {
  unsigned char* buf = nullptr;
  const int len = i2d(obj, &buf);
  if (len <= 0) return "";
  OsslPtr<unsigned char> owned(buf);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
}

// SHA-256, fetched from the default provider once and kept for the life of the process: every
// EVP_sha256() use makes OpenSSL 3 look the implementation up again (a lock and a hash-table
// search per call). nullptr only if the default provider has no SHA-256. Thread-safe.
inline const EVP_MD* Sha256Md() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// SHA-256 of `data`: the 32 raw bytes. The one helper for it (the CMS digests, the hashed
// secrets and contract texts, the web's row keys). Aborts only if OpenSSL cannot hash a buffer.
inline std::string Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 Sha256Md(), nullptr) != 1 ||
      len != out.size()) {
    std::abort();
  }
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

}  // namespace qsign

#endif  // QSIGN_COMMON_OSSL_H_
