#include "tools/cli/cms.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/ossl.h"

namespace qsign::cli {
namespace {

absl::StatusOr<OsslPtr<X509>> ParseCert(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return absl::InvalidArgumentError("certificate: not DER X.509");
  return cert;
}

absl::Status OpenSslError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, " failed (OpenSSL)"));
}

}  // namespace

std::string Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
             EVP_sha256(), nullptr);
  return out;
}

absl::StatusOr<std::string> CertificatePem(const std::string& der) {
  auto cert = ParseCert(der);
  if (!cert.ok()) return cert.status();
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert->get()) != 1) return OpenSslError("PEM");
  char* data = nullptr;  // Owned by bio.
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> DetachedCadesB(const std::string& content_sha256,
                                           const std::string& signer_cert_der,
                                           const std::vector<std::string>& chain_der,
                                           absl::Time signing_time, const RemoteSignFn& sign) {
  if (content_sha256.size() != 32) return absl::InvalidArgumentError("content hash: not SHA-256");
  auto cert = ParseCert(signer_cert_der);
  if (!cert.ok()) return cert.status();
  constexpr unsigned int kFlags = CMS_PARTIAL | CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP;
  OsslPtr<CMS_ContentInfo> cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, kFlags));
  if (!cms) return OpenSslError("CMS_sign");
  // The certificate's public key stands in for the private key: CMS_add1_signer only checks that
  // they match and sets the signature algorithm; with CMS_PARTIAL nothing is signed here.
  EVP_PKEY* pub = X509_get0_pubkey(cert->get());  // Owned by the certificate.
  if (pub == nullptr) return OpenSslError("certificate public key");
  CMS_SignerInfo* si =  // Owned by cms.
      CMS_add1_signer(cms.get(), cert->get(), pub, EVP_sha256(), kFlags);
  if (si == nullptr) return OpenSslError("CMS_add1_signer");
  for (const std::string& der : chain_der) {
    auto ca = ParseCert(der);
    if (!ca.ok()) return ca.status();
    if (CMS_add1_cert(cms.get(), ca->get()) != 1) return OpenSslError("CMS_add1_cert");
  }
  if (CMS_set_detached(cms.get(), 1) != 1) return OpenSslError("CMS_set_detached");

  // Signed attributes (CAdES-B-B): content type, signing time, message digest, and the ESS
  // signing-certificate-v2 that binds the signer certificate (SHA-256 + issuer/serial).
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
                                  OBJ_nid2obj(NID_pkcs7_data), -1) != 1) {
    return OpenSslError("contentType attribute");
  }
  OsslPtr<ASN1_TIME> when(ASN1_TIME_set(nullptr, absl::ToTimeT(signing_time)));
  if (!when ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, when->type, when.get(), -1) != 1) {
    return OpenSslError("signingTime attribute");
  }
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING,
                                  content_sha256.data(),
                                  static_cast<int>(content_sha256.size())) != 1) {
    return OpenSslError("messageDigest attribute");
  }
  OsslPtr<ESS_SIGNING_CERT_V2> ess(
      OSSL_ESS_signing_cert_v2_new_init(EVP_sha256(), cert->get(), nullptr, 1));
  if (!ess) return OpenSslError("signingCertificateV2");
  const std::string ess_der = ToDer(ess.get(), i2d_ESS_SIGNING_CERT_V2);
  if (ess_der.empty()) return OpenSslError("signingCertificateV2 encoding");
  const int added =
      CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
                                  ess_der.data(), static_cast<int>(ess_der.size()));
  if (added != 1) return OpenSslError("signingCertificateV2 attribute");

  // What is signed: the DER SET OF the signed attributes, in DER order (as the verifier
  // re-encodes them).
  OsslPtr<STACK_OF(X509_ATTRIBUTE)> attrs(sk_X509_ATTRIBUTE_new_null());
  if (!attrs) return OpenSslError("attributes");
  for (int i = 0; i < CMS_signed_get_attr_count(si); ++i) {
    sk_X509_ATTRIBUTE_push(attrs.get(), CMS_signed_get_attr(si, i));  // Not owned.
  }
  unsigned char* abuf = nullptr;
  const int alen = ASN1_item_i2d(reinterpret_cast<ASN1_VALUE*>(attrs.get()), &abuf,
                                 ASN1_ITEM_rptr(PKCS7_ATTR_SIGN));
  if (alen <= 0) return OpenSslError("signed attributes encoding");
  OsslPtr<unsigned char> owned_abuf(abuf);
  const std::string to_sign =
      Sha256(std::string_view(reinterpret_cast<char*>(abuf), static_cast<size_t>(alen)));

  auto signature = sign(to_sign);
  if (!signature.ok()) return signature.status();
  ASN1_OCTET_STRING* sig = CMS_SignerInfo_get0_signature(si);  // Owned by si.
  if (sig == nullptr ||
      ASN1_STRING_set(sig, signature->data(), static_cast<int>(signature->size())) != 1) {
    return OpenSslError("setting the signature");
  }

  OsslPtr<BIO> out(BIO_new(BIO_s_mem()));
  if (!out || i2d_CMS_bio(out.get(), cms.get()) != 1) return OpenSslError("CMS encoding");
  char* data = nullptr;  // Owned by out.
  const long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace qsign::cli
