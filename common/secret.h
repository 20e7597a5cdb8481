// Secrets (PINs, activation codes, token keys) live in buffers that are wiped when freed, are
// read from files (never argv), and are compared in constant time. Never log a SecretString.
#ifndef QSIGN_COMMON_SECRET_H_
#define QSIGN_COMMON_SECRET_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsign {

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  SecretString(SecretString&& other) noexcept;
  SecretString& operator=(SecretString&& other) noexcept;
  ~SecretString();

  // The raw bytes, for handing to the HSM or a KDF. Do not copy them anywhere that outlives
  // this object.
  std::string_view value() const { return value_; }
  bool empty() const { return value_.empty(); }

 private:
  void Wipe();
  std::string value_;
};

// Reads a secret from a file, dropping one trailing newline (\n or \r\n). NOT_FOUND /
// PERMISSION_DENIED name the path, never the content; an empty file is INVALID_ARGUMENT.
absl::StatusOr<SecretString> ReadSecretFile(std::string_view path);

// Constant-time equality (length is not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace qsign

#endif  // QSIGN_COMMON_SECRET_H_
