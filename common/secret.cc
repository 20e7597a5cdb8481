#include "common/secret.h"

#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign {

SecretString::SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) {
  other.Wipe();
}

SecretString& SecretString::operator=(SecretString&& other) noexcept {
  if (this != &other) {
    Wipe();
    value_ = std::move(other.value_);
    other.Wipe();
  }
  return *this;
}

SecretString::~SecretString() { Wipe(); }

void SecretString::Wipe() {
  // Wipe the whole capacity: a shorter string may have left bytes past size().
  value_.resize(value_.capacity());
  if (!value_.empty()) OPENSSL_cleanse(value_.data(), value_.size());
  value_.clear();
}

absl::StatusOr<SecretString> ReadSecretFile(std::string_view path) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) {
    int err = errno;
    std::string msg = absl::StrCat("cannot read secret file ", Av(path), ": ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::NotFoundError(msg);
  }
  SecretString secret(std::string(std::istreambuf_iterator<char>(in), {}));
  std::string_view v = secret.value();
  size_t len = v.size();
  if (len > 0 && v[len - 1] == '\n') --len;
  if (len > 0 && v[len - 1] == '\r') --len;
  if (len == 0) return absl::InvalidArgumentError(absl::StrCat("secret file ", Av(path), " is empty"));
  if (len == v.size()) return secret;
  return SecretString(std::string(v.substr(0, len)));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace qsign
