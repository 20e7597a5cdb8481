#include "common/cades/signed_data.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ossl.h"
#include "tests/testing/test_pki.h"

namespace qsign::cades {
namespace {

std::string SpkiDer(EVP_PKEY* key) { return ToDer(key, i2d_PUBKEY); }

// A software key standing in for the HSM key, and its certificate.
struct Signer {
  OsslPtr<EVP_PKEY> key;
  std::string certificate_der;

  // What the remote signer does: the signature of a SHA-256 digest.
  absl::StatusOr<std::string> Sign(const std::string& digest) const {
    OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1) {
      return absl::InternalError("sign init");
    }
    size_t len = 0;
    if (EVP_PKEY_sign(ctx.get(), nullptr, &len, Bytes(digest), digest.size()) != 1) {
      return absl::InternalError("sign size");
    }
    std::string signature(len, '\0');
    if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                      Bytes(digest), digest.size()) != 1) {
      return absl::InternalError("sign");
    }
    signature.resize(len);
    return signature;
  }
};

Signer NewSigner(EVP_PKEY* key) {
  Signer signer{OsslPtr<EVP_PKEY>(key), ""};
  signer.certificate_der = testing::CertificateFor(SpkiDer(key));
  return signer;
}

// What a relying party checks: the signature over the signed attributes, and that their
// messageDigest is the content's (the certificate chain is not the subject here).
bool Verifies(const std::string& p7s, const std::string& content) {
  OsslPtr<BIO> in(BIO_new_mem_buf(p7s.data(), static_cast<int>(p7s.size())));
  OsslPtr<CMS_ContentInfo> cms(d2i_CMS_bio(in.get(), nullptr));
  if (!cms) return false;
  OsslPtr<BIO> data(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  return CMS_verify(cms.get(), nullptr, nullptr, data.get(), nullptr,
                    CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1;
}

class CmsTest : public ::testing::TestWithParam<int> {
 protected:
  Signer MakeSigner() const {
    return NewSigner(GetParam() == EVP_PKEY_EC ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048));
  }
};

TEST_P(CmsTest, DetachedCadesBVerifiesOverTheContent) {
  const Signer signer = MakeSigner();
  const std::string content = "Ugovor o zakupu stana, Beograd\n";
  absl::StatusOr<std::string> p7s =
      Sign({.content_sha256 = Sha256(content),
            .signer_cert_der = signer.certificate_der,
            .signing_time = absl::FromUnixSeconds(1700000000)},
           [&signer](const std::string& digest) { return signer.Sign(digest); });
  ASSERT_TRUE(p7s.ok()) << p7s.status();
  EXPECT_TRUE(Verifies(*p7s, content));
  EXPECT_FALSE(Verifies(*p7s, "Ugovor o zakupu stana, Novi Sad\n"));

  // CAdES-B-B: the signing certificate is bound by signingCertificateV2, and signingTime is
  // the time given.
  OsslPtr<BIO> in(BIO_new_mem_buf(p7s->data(), static_cast<int>(p7s->size())));
  OsslPtr<CMS_ContentInfo> cms(d2i_CMS_bio(in.get(), nullptr));
  ASSERT_TRUE(cms);
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);  // Not owned.
  ASSERT_NE(si, nullptr);
  EXPECT_GE(CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, -1), 0);
  const int at = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
  ASSERT_GE(at, 0);
  const auto* when = static_cast<const ASN1_TIME*>(
      X509_ATTRIBUTE_get0_data(CMS_signed_get_attr(si, at), 0, V_ASN1_UTCTIME, nullptr));
  ASSERT_NE(when, nullptr);
  EXPECT_EQ(ASN1_TIME_cmp_time_t(when, 1700000000), 0);
}

INSTANTIATE_TEST_SUITE_P(EcAndRsa, CmsTest, ::testing::Values(EVP_PKEY_EC, EVP_PKEY_RSA));

TEST(CmsErrorsTest, RefusesWhatIsNotSha256OrACertificate) {
  const Signer signer = NewSigner(EVP_EC_gen("P-256"));
  auto never = [](const std::string&) -> absl::StatusOr<std::string> {
    ADD_FAILURE() << "nothing to sign";
    return absl::InternalError("");
  };
  EXPECT_EQ(Sign({.content_sha256 = "short", .signer_cert_der = signer.certificate_der}, never)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Sign({.content_sha256 = Sha256("x"), .signer_cert_der = "not DER"}, never).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(CmsErrorsTest, TheRemoteSignersRefusalIsTheAnswer) {
  const Signer signer = NewSigner(EVP_EC_gen("P-256"));
  absl::StatusOr<std::string> p7s =
      Sign({.content_sha256 = Sha256("x"), .signer_cert_der = signer.certificate_der},
           [](const std::string&) -> absl::StatusOr<std::string> {
             return absl::PermissionDeniedError("denied in the app");
           });
  EXPECT_EQ(p7s.status(), absl::PermissionDeniedError("denied in the app"));
}

TEST(CmsErrorsTest, CertificatePemIsPem) {
  const Signer signer = NewSigner(EVP_EC_gen("P-256"));
  absl::StatusOr<std::string> pem = CertificatePem(signer.certificate_der);
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(pem->rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
  EXPECT_FALSE(CertificatePem("not DER").ok());
}

}  // namespace
}  // namespace qsign::cades
