#include "tests/testing/test_pki.h"

#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/x509.h>

#include <memory>

#include "common/ossl.h"

namespace qsign::testing {
namespace {

OsslPtr<EVP_PKEY> ParseSpki(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return OsslPtr<EVP_PKEY>(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
}

}  // namespace

bool VerifyDigestSignature(const std::string& spki_der, const std::string& digest,
                           const std::string& signature, const EVP_MD* md, int rsa_padding) {
  OsslPtr<EVP_PKEY> key = ParseSpki(spki_der);
  if (key == nullptr) return false;
  OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (ctx == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1) return false;
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    EVP_PKEY_CTX_set_rsa_padding(ctx.get(), rsa_padding);
    if (rsa_padding == RSA_PKCS1_PSS_PADDING) {
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST);
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md);
    }
  }
  EVP_PKEY_CTX_set_signature_md(ctx.get(), md);
  return EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                         signature.size(), reinterpret_cast<const unsigned char*>(digest.data()),
                         digest.size()) == 1;
}

std::string EcdsaRawToDer(const std::string& raw) {
  const size_t half = raw.size() / 2;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  OsslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  ECDSA_SIG_set0(sig.get(), BN_bin2bn(bytes, static_cast<int>(half), nullptr),
                 BN_bin2bn(bytes + half, static_cast<int>(half), nullptr));
  return ToDer(sig.get(), i2d_ECDSA_SIG);
}

std::string CertificateFor(const std::string& spki_der) {
  OsslPtr<EVP_PKEY> subject_key = ParseSpki(spki_der);
  OsslPtr<EVP_PKEY> ca_key(EVP_EC_gen("P-256"));
  OsslPtr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 42);
  X509_NAME* name = X509_get_subject_name(cert.get());  // Owned by cert.
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, 0, nullptr);
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), 5 * 365, 0, nullptr);
  X509_set_pubkey(cert.get(), subject_key.get());
  X509_sign(cert.get(), ca_key.get(), EVP_sha256());
  return ToDer(cert.get(), i2d_X509);
}

std::string SpkiOfCertificate(const std::string& certificate_der) {
  const auto* p = reinterpret_cast<const unsigned char*>(certificate_der.data());
  OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(certificate_der.size())));
  if (cert == nullptr) return "";
  return ToDer(X509_get0_pubkey(cert.get()), i2d_PUBKEY);
}

std::string SignatureValue(const std::string& cms_der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(cms_der.data());
  OsslPtr<CMS_ContentInfo> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(cms_der.size())));
  if (cms == nullptr) return "";
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (infos == nullptr || sk_CMS_SignerInfo_num(infos) != 1) return "";
  ASN1_OCTET_STRING* sig = CMS_SignerInfo_get0_signature(sk_CMS_SignerInfo_value(infos, 0));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(sig)),
                     ASN1_STRING_length(sig));
}

}  // namespace qsign::testing
