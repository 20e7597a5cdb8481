#include "services/gateway/tokens.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/aead.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

using Json = nlohmann::json;

constexpr char kTokenPrefix[] = "at2";
constexpr char kCodePrefix[] = "ac1";
constexpr char kHandlePrefix[] = "ah1";
constexpr char kTicketPrefix[] = "lt1.";
// A credential-scope token carries a SAD.
constexpr size_t kMaxTokenBytes = 8192;

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Nonce() {
  unsigned char nonce[16];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) return "";
  return EncodeBase64Url(std::string_view(reinterpret_cast<char*>(nonce), sizeof(nonce)));
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

std::string Seal(std::string_view prefix, std::string_view key, const std::string& payload) {
  return absl::StrCat(Av(prefix), ".", EncodeBase64Url(payload), ".",
                      EncodeBase64Url(HmacSha256(key, payload)));
}

// The payload of a genuine sealed value; nullopt otherwise.
std::optional<std::string> Unseal(std::string_view sealed, std::string_view prefix,
                                  std::string_view key) {
  std::string payload, mac;
  if (!SplitSealed(sealed, prefix, &payload, &mac)) return std::nullopt;
  if (!ConstantTimeEquals(mac, HmacSha256(key, payload))) return std::nullopt;
  return payload;
}

Json ClaimsJson(const TokenClaims& c) {
  Json j = {{"c", c.client_id}, {"e", absl::ToUnixSeconds(c.expires_at)}, {"n", Nonce()}};
  if (!c.account_id.empty()) j["a"] = c.account_id;
  if (c.scope != "service") j["s"] = c.scope;
  if (!c.credential_id.empty()) j["cr"] = c.credential_id;
  if (!c.sad.empty()) j["sad"] = c.sad;
  return j;
}

// Genuine JSON from ClaimsJson; nullopt only if the key was shared with something else.
std::optional<TokenClaims> ClaimsOf(const Json& j) {
  if (!j.is_object() || !j.contains("c") || !j["c"].is_string() || !j.contains("e") ||
      !j["e"].is_number_integer()) {
    return std::nullopt;
  }
  TokenClaims c{.client_id = j["c"].get<std::string>(),
                .expires_at = absl::FromUnixSeconds(j["e"].get<int64_t>())};
  auto str = [&](const char* name) {
    return j.contains(name) && j[name].is_string() ? j[name].get<std::string>() : "";
  };
  c.account_id = str("a");
  if (const std::string scope = str("s"); !scope.empty()) c.scope = scope;
  c.credential_id = str("cr");
  c.sad = str("sad");
  return c;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

absl::StatusOr<std::unique_ptr<TokenSealer>> TokenSealer::New(const SecretString& key) {
  if (key.value().size() < 32) {
    return absl::InvalidArgumentError("token key: at least 32 bytes of secret randomness");
  }
  return std::unique_ptr<TokenSealer>(
      new TokenSealer(SecretString(HmacSha256(key.value(), "qsign-gateway access-token key")),
                      SecretString(HmacSha256(key.value(), "qsign-gateway handle key")),
                      SecretString(HmacSha256(key.value(), "qsign-gateway code key")),
                      SecretString(HmacSha256(key.value(), "qsign-gateway ticket key"))));
}

absl::StatusOr<std::string> TokenSealer::IssueAccessToken(std::string_view client_id,
                                                          absl::Time expires_at) const {
  return IssueAccessToken(
      TokenClaims{.client_id = std::string(client_id), .expires_at = expires_at});
}

absl::StatusOr<std::string> TokenSealer::IssueAccessToken(const TokenClaims& claims) const {
  Json j = ClaimsJson(claims);
  if (j["n"].get<std::string>().empty()) return absl::InternalError("RAND_bytes failed");
  return Seal(kTokenPrefix, token_key_.value(), Dump(j));
}

absl::StatusOr<VerifiedToken> TokenSealer::VerifyAccessToken(std::string_view token,
                                                             absl::Time now) const {
  const absl::Status invalid = absl::UnauthenticatedError("access token: invalid");
  auto payload = Unseal(token, kTokenPrefix, token_key_.value());
  if (!payload) return invalid;
  auto claims = ClaimsOf(Json::parse(*payload, nullptr, false));
  if (!claims) return invalid;
  if (now >= claims->expires_at) return absl::DeadlineExceededError("access token: expired");
  return *claims;
}

std::string TokenSealer::SealCode(const CodeClaims& claims) const {
  Json j = ClaimsJson(claims.token);
  j["r"] = claims.redirect_uri;
  j["pk"] = claims.code_challenge;
  return Seal(kCodePrefix, code_key_.value(), Dump(j));
}

absl::StatusOr<CodeClaims> TokenSealer::OpenCode(std::string_view code, absl::Time now) const {
  const absl::Status invalid = absl::UnauthenticatedError("code: invalid or expired");
  auto payload = Unseal(code, kCodePrefix, code_key_.value());
  if (!payload) return invalid;
  const Json j = Json::parse(*payload, nullptr, false);
  auto token = ClaimsOf(j);
  if (!token || !j.contains("r") || !j["r"].is_string() || !j.contains("pk") ||
      !j["pk"].is_string()) {
    return invalid;
  }
  if (now >= token->expires_at) return invalid;
  return CodeClaims{.token = *std::move(token),
                    .redirect_uri = j["r"].get<std::string>(),
                    .code_challenge = j["pk"].get<std::string>()};
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

std::string TokenSealer::SealTicket(std::string_view plaintext) const {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(ticket_key_.value(), plaintext);
  if (!sealed.ok()) return "";
  return absl::StrCat(kTicketPrefix, EncodeBase64Url(*sealed));
}

absl::StatusOr<std::string> TokenSealer::OpenTicket(std::string_view ticket) const {
  const absl::Status invalid = absl::UnauthenticatedError("ticket: invalid");
  const std::string_view prefix = kTicketPrefix;
  if (ticket.size() > kMaxTokenBytes || ticket.substr(0, prefix.size()) != prefix) return invalid;
  auto raw = DecodeBase64Url(ticket.substr(prefix.size()));
  if (!raw) return invalid;
  absl::StatusOr<std::string> out = OpenAes256Gcm(ticket_key_.value(), *raw);
  if (!out.ok()) return invalid;
  return *std::move(out);
}

}  // namespace qsign::gateway
