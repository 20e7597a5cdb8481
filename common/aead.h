// AES-256-GCM sealing of small records with a 32-byte key: a random 96-bit IV, the ciphertext and
// the 128-bit tag, as one string (iv || ciphertext || tag). `aad` (associated data) is
// authenticated but not stored: opening with another aad fails, which binds a sealed record to
// where it belongs. Used by the gateway's tickets and the web's shared browser sessions.
#ifndef QSIGN_COMMON_AEAD_H_
#define QSIGN_COMMON_AEAD_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsign {

// iv || AES-256-GCM(key, plaintext, aad) || tag; INTERNAL when the key is not 32 bytes or the
// OS random generator fails.
absl::StatusOr<std::string> SealAes256Gcm(std::string_view key, std::string_view plaintext,
                                          std::string_view aad = "");

// The plaintext of SealAes256Gcm's output; INVALID_ARGUMENT when it was made with another key or
// aad, changed, or is too short.
absl::StatusOr<std::string> OpenAes256Gcm(std::string_view key, std::string_view sealed,
                                          std::string_view aad = "");

}  // namespace qsign

#endif  // QSIGN_COMMON_AEAD_H_
