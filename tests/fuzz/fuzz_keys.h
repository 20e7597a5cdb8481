// A P-256 key made in memory with OpenSSL, for fuzz targets that must reach what a verifier
// parses after the signature check (a SAD's claims, a session token's fields): the target signs
// the fuzzed payload itself. Not an HSM key; it protects nothing.
#ifndef QSIGN_TESTS_FUZZ_FUZZ_KEYS_H_
#define QSIGN_TESTS_FUZZ_FUZZ_KEYS_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "common/ossl.h"

namespace qsign::fuzz {

class P256Key {
 public:
  P256Key() : pkey_(EVP_EC_gen("P-256")) {
    if (pkey_ == nullptr) std::abort();
  }
  // SubjectPublicKeyInfo DER.
  std::string Spki() const {
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(pkey_.get(), &der);
    if (n <= 0) std::abort();
    std::string out(reinterpret_cast<char*>(der), n);
    OPENSSL_free(der);
    return out;
  }
  // ECDSA over SHA-256, DER.
  std::string Sign(std::string_view message) const {
    OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
      std::abort();
    }
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
      std::abort();
    }
    sig.resize(len);
    return sig;
  }

 private:
  OsslPtr<EVP_PKEY> pkey_;
};

}  // namespace qsign::fuzz

#endif  // QSIGN_TESTS_FUZZ_FUZZ_KEYS_H_
