#include "common/aead.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

namespace qsign {
namespace {

constexpr size_t kIv = 12;
constexpr size_t kTag = 16;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

absl::StatusOr<std::string> SealAes256Gcm(std::string_view key, std::string_view plaintext,
                                          std::string_view aad) {
  if (key.size() != 32) return absl::InternalError("aead: the key must be 32 bytes");
  std::string out(kIv + plaintext.size() + kTag, '\0');
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(dst, kIv) != 1) return absl::InternalError("aead: no randomness");
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0, final_len = 0, aad_len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), dst) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &aad_len, U(aad),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), dst + kIv, &len, U(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), dst + kIv + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, dst + kIv + len + final_len) !=
          1) {
    return absl::InternalError("aead: sealing failed");
  }
  return out;
}

absl::StatusOr<std::string> OpenAes256Gcm(std::string_view key, std::string_view sealed,
                                          std::string_view aad) {
  const absl::Status invalid = absl::InvalidArgumentError("aead: not sealed with this key");
  if (key.size() != 32 || sealed.size() < kIv + kTag) return invalid;
  const size_t ct_len = sealed.size() - kIv - kTag;
  std::string out(ct_len, '\0');
  std::string tag(sealed.substr(kIv + ct_len));
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0, final_len = 0, aad_len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(sealed)) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &aad_len, U(aad),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        U(sealed) + kIv, static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len,
                          &final_len) != 1) {
    return invalid;
  }
  out.resize(static_cast<size_t>(len + final_len));
  return out;
}

}  // namespace qsign
