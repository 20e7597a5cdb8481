#include "hsm/key_encoding.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
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

// The DER written without OpenSSL is exactly what OpenSSL writes for the same r and s: top bits
// set (a zero byte in front), leading zeros (dropped), zero, and halves long enough for the
// long length form.
TEST(KeyEncodingTest, EcdsaRawToDerMatchesOpenSsl) {
  std::vector<std::string> raws;
  for (size_t half : {1, 32, 48, 66, 100}) {
    for (unsigned char first : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      std::string raw(2 * half, '\x5a');
      raw[0] = static_cast<char>(first);
      raw[half] = static_cast<char>(0xff - first);
      raws.push_back(raw);
      raws.push_back(std::string(2 * half, '\0'));
      std::string leading_zeros(2 * half, '\0');
      leading_zeros[half - 1] = static_cast<char>(first);
      leading_zeros[2 * half - 1] = '\x80';
      raws.push_back(leading_zeros);
    }
  }
  for (const std::string& raw : raws) {
    const size_t half = raw.size() / 2;
    const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
    OsslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
    ASSERT_EQ(ECDSA_SIG_set0(sig.get(), BN_bin2bn(bytes, static_cast<int>(half), nullptr),
                             BN_bin2bn(bytes + half, static_cast<int>(half), nullptr)),
              1);
    unsigned char* expected = nullptr;
    const int length = i2d_ECDSA_SIG(sig.get(), &expected);
    ASSERT_GT(length, 0);
    const std::string want(reinterpret_cast<char*>(expected), static_cast<size_t>(length));
    OPENSSL_free(expected);
    absl::StatusOr<std::string> der = EcdsaRawToDer(raw);
    ASSERT_TRUE(der.ok()) << der.status();
    EXPECT_EQ(absl::BytesToHexString(*der), absl::BytesToHexString(want))
        << "raw " << absl::BytesToHexString(raw);
  }
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
