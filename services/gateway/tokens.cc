#include "services/gateway/tokens.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

constexpr char kTokenPrefix[] = "at1";
constexpr char kHandlePrefix[] = "ah1";
constexpr size_t kMaxTokenBytes = 1024;

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// "<prefix>.<payload>.<mac>" split into its three parts; false when not of that shape.
bool SplitSealed(std::string_view sealed, std::string_view prefix, std::string* payload,
                 std::string* mac) {
  if (sealed.size() > kMaxTokenBytes) return false;
  std::vector<absl::string_view> parts = absl::StrSplit(Av(sealed), '.');
  if (parts.size() != 3 || Sv(parts[0]) != prefix) return false;
  auto p = DecodeBase64Url(Sv(parts[1]));
  auto m = DecodeBase64Url(Sv(parts[2]));
  if (!p || !m) return false;
  *payload = *std::move(p);
  *mac = *std::move(m);
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenSealer>> TokenSealer::New(const SecretString& key) {
  if (key.value().size() < 32) {
    return absl::InvalidArgumentError("token key: at least 32 bytes of secret randomness");
  }
  return std::unique_ptr<TokenSealer>(
      new TokenSealer(SecretString(HmacSha256(key.value(), "qsign-gateway access-token key")),
                      SecretString(HmacSha256(key.value(), "qsign-gateway handle key"))));
}

absl::StatusOr<std::string> TokenSealer::IssueAccessToken(std::string_view client_id,
                                                          absl::Time expires_at) const {
  unsigned char nonce[16];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) return absl::InternalError("RAND_bytes failed");
  const std::string payload =
      absl::StrCat(Av(client_id), "\n", absl::ToUnixSeconds(expires_at), "\n",
                   absl::string_view(reinterpret_cast<char*>(nonce), sizeof(nonce)));
  return absl::StrCat(kTokenPrefix, ".", EncodeBase64Url(payload), ".",
                      EncodeBase64Url(HmacSha256(token_key_.value(), payload)));
}

absl::StatusOr<VerifiedToken> TokenSealer::VerifyAccessToken(std::string_view token,
                                                             absl::Time now) const {
  const absl::Status invalid = absl::UnauthenticatedError("access token: invalid");
  std::string payload, mac;
  if (!SplitSealed(token, kTokenPrefix, &payload, &mac)) return invalid;
  if (!ConstantTimeEquals(mac, HmacSha256(token_key_.value(), payload))) return invalid;
  // Genuine from here on: the fields are ours.
  std::vector<std::string> fields = absl::StrSplit(payload, absl::MaxSplits('\n', 2));
  int64_t expiry = 0;
  if (fields.size() != 3 || !absl::SimpleAtoi(fields[1], &expiry)) return invalid;
  VerifiedToken out{.client_id = fields[0], .expires_at = absl::FromUnixSeconds(expiry)};
  if (now >= out.expires_at) return absl::DeadlineExceededError("access token: expired");
  return out;
}

std::string TokenSealer::SealHandle(std::string_view client_id, std::string_view request_id) const {
  const std::string mac =
      HmacSha256(handle_key_.value(), absl::StrCat(Av(client_id), "\n", Av(request_id)));
  return absl::StrCat(kHandlePrefix, ".", EncodeBase64Url(request_id), ".", EncodeBase64Url(mac));
}

absl::StatusOr<std::string> TokenSealer::OpenHandle(std::string_view client_id,
                                                    std::string_view handle) const {
  const absl::Status unknown = absl::NotFoundError("handle: unknown");
  std::string request_id, mac;
  if (!SplitSealed(handle, kHandlePrefix, &request_id, &mac)) return unknown;
  const std::string want =
      HmacSha256(handle_key_.value(), absl::StrCat(Av(client_id), "\n", request_id));
  if (!ConstantTimeEquals(mac, want)) return unknown;
  return request_id;
}

}  // namespace qsign::gateway
