#include "services/consent/pin.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

// Wipes a local copy of key material when it goes out of scope.
class Wiped {
 public:
  explicit Wiped(size_t n) : bytes_(n) {}
  ~Wiped() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  unsigned char* data() { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }

 private:
  std::vector<unsigned char> bytes_;
};

bool ValidPepperId(std::string_view id) {
  if (id.empty() || id.size() > 16) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateNewPin(std::string_view pin, std::string_view field) {
  const std::string f(field);
  if (pin.size() < 6 || pin.size() > 8) {
    return absl::InvalidArgumentError(absl::StrCat(f, ": 6 to 8 digits"));
  }
  for (char c : pin) {
    if (c < '0' || c > '9') return absl::InvalidArgumentError(absl::StrCat(f, ": digits only"));
  }
  bool same = true, up = true, down = true;
  for (size_t i = 1; i < pin.size(); ++i) {
    same = same && pin[i] == pin[0];
    // Runs wrap around: "890123" and "210987" are as easy as "123456".
    const int step = (pin[i] - pin[i - 1] + 10) % 10;
    up = up && step == 1;
    down = down && step == 9;
  }
  if (same) return absl::InvalidArgumentError(absl::StrCat(f, ": one digit repeated is too easy"));
  if (up || down) {
    return absl::InvalidArgumentError(absl::StrCat(f, ": a run of digits is too easy"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PinHasher>> PinHasher::New(std::string pepper_id,
                                                          SecretString pepper, PinHashParams params,
                                                          int max_concurrent) {
  if (!ValidPepperId(pepper_id)) {
    return absl::InvalidArgumentError("pin pepper id: 1..16 characters of [A-Za-z0-9_-]");
  }
  if (pepper.value().size() < 16) {
    return absl::InvalidArgumentError("pin pepper: at least 16 bytes");
  }
  if (params.time_cost < 1 || params.memory_kib < 8 * params.parallelism ||
      params.parallelism < 1) {
    return absl::InvalidArgumentError("pin hash parameters: t >= 1, p >= 1, m >= 8*p KiB");
  }
  if (max_concurrent < 1) return absl::InvalidArgumentError("pin hasher: max_concurrent >= 1");
  return std::unique_ptr<PinHasher>(
      new PinHasher(std::move(pepper_id), std::move(pepper), params, max_concurrent));
}

absl::StatusOr<std::string> PinHasher::Compute(std::string_view pin, std::string_view salt,
                                               const PinHashParams& params) const {
  // The pepper first: without it the database alone is worth nothing to a guesser.
  Wiped keyed(SHA256_DIGEST_LENGTH);
  unsigned int keyed_len = 0;
  if (HMAC(EVP_sha256(), pepper_.value().data(), static_cast<int>(pepper_.value().size()),
           reinterpret_cast<const unsigned char*>(pin.data()), pin.size(), keyed.data(),
           &keyed_len) == nullptr) {
    return absl::InternalError("pin: HMAC failed");
  }
  std::string out(kHashBytes, '\0');
  {
    // Bound the memory in use: each hash holds memory_kib while it runs.
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](const PinHasher* h)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) { return h->running_ < h->max_concurrent_; },
        this));
    ++running_;
  }
  const int rc =
      argon2id_hash_raw(params.time_cost, params.memory_kib, params.parallelism, keyed.data(),
                        keyed_len, salt.data(), salt.size(), out.data(), out.size());
  {
    absl::MutexLock lock(&mu_);
    --running_;
  }
  if (rc != ARGON2_OK) {
    return absl::InternalError(absl::StrCat("pin: argon2id failed: ", argon2_error_message(rc)));
  }
  return out;
}

absl::StatusOr<std::string> PinHasher::Hash(std::string_view pin) const {
  std::string salt(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), kSaltBytes) != 1) {
    return absl::InternalError("pin: no randomness");
  }
  auto hash = Compute(pin, salt, params_);
  if (!hash.ok()) return hash.status();
  return absl::StrCat("argon2id$t=", params_.time_cost, "$m=", params_.memory_kib,
                      "$p=", params_.parallelism, "$", pepper_id_, "$",
                      absl::BytesToHexString(salt), "$", absl::BytesToHexString(*hash));
}

absl::StatusOr<bool> PinHasher::Verify(std::string_view pin, std::string_view verifier) const {
  std::vector<std::string_view> parts;
  for (absl::string_view part : absl::StrSplit(Av(verifier), '$')) parts.push_back(Sv(part));
  PinHashParams params;
  if (parts.size() != 7 || parts[0] != "argon2id" || !parts[1].starts_with("t=") ||
      !parts[2].starts_with("m=") || !parts[3].starts_with("p=") ||
      !absl::SimpleAtoi(Av(parts[1].substr(2)), &params.time_cost) ||
      !absl::SimpleAtoi(Av(parts[2].substr(2)), &params.memory_kib) ||
      !absl::SimpleAtoi(Av(parts[3].substr(2)), &params.parallelism) ||
      parts[5].size() != 2 * kSaltBytes || parts[6].size() != 2 * kHashBytes) {
    return absl::InternalError("pin: malformed verifier");
  }
  if (parts[4] != pepper_id_) {
    return absl::InternalError(
        absl::StrCat("pin: verifier made with unknown pepper ", Av(parts[4])));
  }
  const std::string salt = absl::HexStringToBytes(Av(parts[5]));
  const std::string expected = absl::HexStringToBytes(Av(parts[6]));
  auto got = Compute(pin, salt, params);
  if (!got.ok()) return got.status();
  return ConstantTimeEquals(*got, expected);
}

}  // namespace qsign::consent
