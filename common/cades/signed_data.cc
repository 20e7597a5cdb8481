#include "common/cades/signed_data.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cades/der.h"
#include "common/ossl.h"

namespace qsign::cades {

struct PreparedSignature::State {
  OsslPtr<CMS_ContentInfo> cms;
  CMS_SignerInfo* si = nullptr;  // Owned by cms.
};

PreparedSignature::PreparedSignature(std::unique_ptr<State> state, std::string to_be_signed)
    : state_(std::move(state)), to_be_signed_(std::move(to_be_signed)) {}

PreparedSignature::~PreparedSignature() = default;

absl::StatusOr<std::string> CertificatePem(const std::string& der) {
  auto cert = CertificateOf(der);
  if (!cert.ok()) return cert.status();
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert->get()) != 1) return OpenSslError("PEM");
  return BioContents(bio.get());
}

absl::StatusOr<std::unique_ptr<PreparedSignature>> PreparedSignature::New(
    const SignerInput& input) {
  if (input.content_sha256.size() != 32) {
    return absl::InvalidArgumentError("content hash: not SHA-256");
  }
  auto cert = CertificateOf(input.signer_cert_der);
  if (!cert.ok()) return cert.status();
  OsslPtr<ASN1_OBJECT> content_type(OBJ_txt2obj(input.content_type_oid.c_str(), 1));
  if (!content_type) return absl::InvalidArgumentError("content type: not a dotted OID");
  const bool detached = input.encapsulated_content.empty();
  unsigned int flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP;
  if (detached) flags |= CMS_DETACHED;
  if (!input.include_certificates) flags |= CMS_NOCERTS;
  auto state = std::make_unique<State>();
  state->cms.reset(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  if (!state->cms) return OpenSslError("CMS_sign");
  CMS_ContentInfo* cms = state->cms.get();
  // The certificate's public key stands in for the private key: CMS_add1_signer only checks that
  // they match and sets the signature algorithm; with CMS_PARTIAL nothing is signed here.
  EVP_PKEY* pub = X509_get0_pubkey(cert->get());  // Owned by the certificate.
  if (pub == nullptr) return OpenSslError("certificate public key");
  state->si = CMS_add1_signer(cms, cert->get(), pub, EVP_sha256(), flags);
  CMS_SignerInfo* si = state->si;
  if (si == nullptr) return OpenSslError("CMS_add1_signer");
  if (input.include_certificates) {
    for (const std::string& der : input.chain_der) {
      auto ca = CertificateOf(der);
      if (!ca.ok()) return ca.status();
      if (CMS_add1_cert(cms, ca->get()) != 1) return OpenSslError("CMS_add1_cert");
    }
  }
  if (CMS_set1_eContentType(cms, content_type.get()) != 1) return OpenSslError("eContentType");
  if (CMS_set_detached(cms, detached ? 1 : 0) != 1) return OpenSslError("CMS_set_detached");
  if (!detached) {
    ASN1_OCTET_STRING** content = CMS_get0_content(cms);  // Owned by cms.
    if (content == nullptr || *content == nullptr) return OpenSslError("eContent");
    if (ASN1_STRING_set(*content, input.encapsulated_content.data(),
                        static_cast<int>(input.encapsulated_content.size())) != 1) {
      return OpenSslError("eContent");
    }
    (*content)->flags &= ~ASN1_STRING_FLAG_CONT;  // Content given, not streamed.
  }

  // Signed attributes (CAdES-B-B): content type, signing time, message digest, and the ESS
  // signing-certificate-v2 that binds the signer certificate (SHA-256 + issuer/serial).
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT, content_type.get(),
                                  -1) != 1) {
    return OpenSslError("contentType attribute");
  }
  if (input.signing_time.has_value()) {
    OsslPtr<ASN1_TIME> when(ASN1_TIME_set(nullptr, absl::ToTimeT(*input.signing_time)));
    if (!when ||
        CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, when->type, when.get(), -1) != 1) {
      return OpenSslError("signingTime attribute");
    }
  }
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING,
                                  input.content_sha256.data(),
                                  static_cast<int>(input.content_sha256.size())) != 1) {
    return OpenSslError("messageDigest attribute");
  }
  OsslPtr<ESS_SIGNING_CERT_V2> ess(
      OSSL_ESS_signing_cert_v2_new_init(EVP_sha256(), cert->get(), nullptr, 1));
  if (!ess) return OpenSslError("signingCertificateV2");
  const std::string ess_der = ToDer(ess.get(), i2d_ESS_SIGNING_CERT_V2);
  if (ess_der.empty()) return OpenSslError("signingCertificateV2 encoding");
  if (CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
                                  ess_der.data(), static_cast<int>(ess_der.size())) != 1) {
    return OpenSslError("signingCertificateV2 attribute");
  }
  auto attrs = SignedAttributesDer(si);
  if (!attrs.ok()) return attrs.status();
  return std::unique_ptr<PreparedSignature>(
      new PreparedSignature(std::move(state), Sha256(*attrs)));
}

absl::StatusOr<std::string> PreparedSignature::Finish(const std::string& signature) {
  if (!state_) return absl::FailedPreconditionError("signature already finished");
  ASN1_OCTET_STRING* sig = CMS_SignerInfo_get0_signature(state_->si);  // Owned by si.
  if (sig == nullptr ||
      ASN1_STRING_set(sig, signature.data(), static_cast<int>(signature.size())) != 1) {
    return OpenSslError("setting the signature");
  }
  auto der = CmsDer(state_->cms.get());
  state_.reset();
  return der;
}

absl::StatusOr<std::string> Sign(const SignerInput& input, const RemoteSignFn& sign) {
  auto prepared = PreparedSignature::New(input);
  if (!prepared.ok()) return prepared.status();
  auto signature = sign((*prepared)->to_be_signed());
  if (!signature.ok()) return signature.status();
  return (*prepared)->Finish(*signature);
}

}  // namespace qsign::cades
