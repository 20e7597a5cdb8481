#include "hsm/key_encoding.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/ossl.h"

namespace qsign::hsm {
namespace {

TEST(KeyEncodingTest, EcParamsRoundTrip) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384}) {
    absl::StatusOr<KeyType> parsed = EcKeyTypeFromParams(EcParamsDer(type));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(EcKeyTypeFromParams("\x06\x03\x2b\x65\x70").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KeyEncodingTest, DigestInfoMatchesOpenSsl) {
  // OpenSSL's own PKCS#1 v1.5 verification accepts what we build: sign the DigestInfo raw with a
  // fresh OpenSSL key and verify with the hash set.
  OsslPtr<EVP_PKEY> key(EVP_RSA_gen(2048));
  ASSERT_NE(key, nullptr);
  for (auto [hash, md] : {std::pair{HashAlgorithm::kSha256, EVP_sha256()},
                          std::pair{HashAlgorithm::kSha384, EVP_sha384()},
                          std::pair{HashAlgorithm::kSha512, EVP_sha512()}}) {
    std::string digest(DigestLength(hash), '\x42');
    std::string info = DigestInfoDer(hash, digest);
    OsslPtr<EVP_PKEY_CTX> sign_ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    ASSERT_EQ(EVP_PKEY_sign_init(sign_ctx.get()), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(sign_ctx.get(), RSA_PKCS1_PADDING), 1);
    std::string signature(256, '\0');
    size_t length = signature.size();
    ASSERT_EQ(
        EVP_PKEY_sign(sign_ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                      reinterpret_cast<const unsigned char*>(info.data()), info.size()),
        1);
    OsslPtr<EVP_PKEY_CTX> verify_ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    ASSERT_EQ(EVP_PKEY_verify_init(verify_ctx.get()), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(verify_ctx.get(), RSA_PKCS1_PADDING), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_signature_md(verify_ctx.get(), md), 1);
    EXPECT_EQ(EVP_PKEY_verify(verify_ctx.get(),
                              reinterpret_cast<const unsigned char*>(signature.data()), length,
                              reinterpret_cast<const unsigned char*>(digest.data()), digest.size()),
              1);
  }
}

TEST(KeyEncodingTest, EcdsaRawToDerKeepsRAndS) {
  std::string raw(64, '\0');
  raw[31] = 5;  // r = 5
  raw[32] = 1;  // s = 2^248
  absl::StatusOr<std::string> der = EcdsaRawToDer(raw);
  ASSERT_TRUE(der.ok()) << der.status();
  const auto* in = reinterpret_cast<const unsigned char*>(der->data());
  OsslPtr<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &in, static_cast<long>(der->size())));
  ASSERT_NE(sig, nullptr);
  EXPECT_TRUE(BN_is_word(ECDSA_SIG_get0_r(sig.get()), 5));
  EXPECT_EQ(BN_num_bits(ECDSA_SIG_get0_s(sig.get())), 249);
  EXPECT_FALSE(EcdsaRawToDer("abc").ok());
}

TEST(KeyEncodingTest, UnwrapEcPointAcceptsDerAndBare) {
  std::string point(65, '\x11');
  point[0] = '\x04';
  std::string wrapped = std::string("\x04\x41", 2) + point;
  for (const std::string& attribute : {wrapped, point}) {
    absl::StatusOr<std::string> unwrapped = UnwrapEcPoint(KeyType::kEcP256, attribute);
    ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
    EXPECT_EQ(*unwrapped, point);
  }
  EXPECT_FALSE(UnwrapEcPoint(KeyType::kEcP384, wrapped).ok());
}

TEST(KeyEncodingTest, EcSpkiRejectsPointOffCurve) {
  std::string point(65, '\x11');
  point[0] = '\x04';
  EXPECT_FALSE(EcSpkiDer(KeyType::kEcP256, point).ok());
}

}  // namespace
}  // namespace qsign::hsm
