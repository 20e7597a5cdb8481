#include "common/auth/session_token.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::auth {
namespace {

constexpr std::string_view kMagic = "qst1";
constexpr size_t kMaxTokenChars = 2048;
constexpr size_t kMaxFieldBytes = 128;

absl::Status Unauthenticated(std::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("session token: ", Av(why)));
}

void PutField(std::string& out, std::string_view field) {
  out.push_back(static_cast<char>(field.size()));
  out.append(field);
}

void PutTime(std::string& out, absl::Time t) {
  auto v = static_cast<uint64_t>(absl::ToUnixMicros(t));
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

// Reads the payload front to back; any short read poisons it.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool Field(std::string* out) {
    if (data_.empty()) return ok_ = false;
    size_t len = static_cast<uint8_t>(data_[0]);
    if (len == 0 || data_.size() < 1 + len) return ok_ = false;
    out->assign(data_.substr(1, len));
    data_.remove_prefix(1 + len);
    return true;
  }
  bool Time(absl::Time* out) {
    if (data_.size() < 8) return ok_ = false;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(data_[i]);
    data_.remove_prefix(8);
    *out = absl::FromUnixMicros(static_cast<int64_t>(v));
    return true;
  }
  bool Byte(int* out) {
    if (data_.empty()) return ok_ = false;
    *out = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool done() const { return ok_ && data_.empty(); }

 private:
  std::string_view data_;
  bool ok_ = true;
};

bool IsHex32(std::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

bool IsFresh(const SessionClaims& claims, absl::Time now, absl::Duration window) {
  return now - claims.auth_time <= window;
}

absl::StatusOr<std::string> SessionTokenPayload(const SessionClaims& claims) {
  if (claims.key_id.empty() || claims.key_id.size() > kMaxFieldBytes) {
    return absl::InvalidArgumentError("session key id: 1..128 bytes");
  }
  if (!IsHex32(claims.session_id)) {
    return absl::InvalidArgumentError("session_id: 32 lower-case hex characters");
  }
  if (claims.account_id.empty() || claims.account_id.size() > kMaxFieldBytes) {
    return absl::InvalidArgumentError("account_id: 1..128 bytes");
  }
  if (claims.expires_at <= claims.issued_at) {
    return absl::InvalidArgumentError("expires_at: after issued_at");
  }
  if (claims.assurance_level < 0 || claims.assurance_level > 255) {
    return absl::InvalidArgumentError("assurance_level: out of range");
  }
  std::string payload(kMagic);
  PutField(payload, claims.key_id);
  PutField(payload, claims.session_id);
  PutField(payload, claims.account_id);
  PutTime(payload, claims.issued_at);
  PutTime(payload, claims.auth_time);
  PutTime(payload, claims.expires_at);
  payload.push_back(static_cast<char>(claims.assurance_level));
  return payload;
}

std::string JoinSessionToken(std::string_view payload, std::string_view signature_der) {
  return absl::StrCat(absl::WebSafeBase64Escape(Av(payload)), ".",
                      absl::WebSafeBase64Escape(Av(signature_der)));
}

void SessionRevocationList::Apply(std::span<const SessionRevocation> entries) {
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries) {
    if (e.sequence <= last_sequence_) continue;
    last_sequence_ = e.sequence;
    if (!e.session_id.empty()) {
      sessions_[e.session_id] = e.keep_until;
      continue;
    }
    auto [it, inserted] =
        accounts_.try_emplace(e.account_id, AccountCutoff{e.revoked_at, e.keep_until});
    if (!inserted) {
      it->second.revoked_at = std::max(it->second.revoked_at, e.revoked_at);
      it->second.keep_until = std::max(it->second.keep_until, e.keep_until);
    }
  }
}

void SessionRevocationList::Forget(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second <= now) {
      sessions_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    if (it->second.keep_until <= now) {
      accounts_.erase(it++);
    } else {
      ++it;
    }
  }
}

bool SessionRevocationList::IsRevoked(const SessionClaims& claims) const {
  absl::ReaderMutexLock lock(&mu_);
  if (sessions_.contains(claims.session_id)) return true;
  auto it = accounts_.find(claims.account_id);
  return it != accounts_.end() && claims.issued_at <= it->second.revoked_at;
}

uint64_t SessionRevocationList::last_sequence() const {
  absl::ReaderMutexLock lock(&mu_);
  return last_sequence_;
}

struct SessionTokenVerifier::Key {
  OsslPtr<EVP_PKEY> pkey;
};

SessionTokenVerifier::SessionTokenVerifier(
    std::map<std::string, std::unique_ptr<Key>, std::less<>> keys)
    : keys_(std::move(keys)) {}
SessionTokenVerifier::~SessionTokenVerifier() = default;

absl::StatusOr<std::unique_ptr<SessionTokenVerifier>> SessionTokenVerifier::New(
    const std::map<std::string, std::string>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("session token verifier: no keys");
  std::map<std::string, std::unique_ptr<Key>, std::less<>> parsed;
  for (const auto& [id, spki] : keys) {
    const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
    OsslPtr<EVP_PKEY> pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
    if (pkey == nullptr || p != reinterpret_cast<const unsigned char*>(spki.data()) + spki.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("session key ", id, ": not a SubjectPublicKeyInfo"));
    }
    if (EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(pkey.get()) != 256) {
      return absl::InvalidArgumentError(absl::StrCat("session key ", id, ": must be EC P-256"));
    }
    parsed[id] = std::make_unique<Key>(Key{std::move(pkey)});
  }
  return std::unique_ptr<SessionTokenVerifier>(new SessionTokenVerifier(std::move(parsed)));
}

absl::StatusOr<SessionClaims> SessionTokenVerifier::Verify(
    std::string_view token, absl::Time now, const SessionRevocationList* revocations) const {
  if (token.empty()) return Unauthenticated("missing");
  const size_t dot = token.find('.');
  std::string payload, sig;
  if (token.size() > kMaxTokenChars || dot == std::string_view::npos ||
      !absl::WebSafeBase64Unescape(Av(token.substr(0, dot)), &payload) ||
      !absl::WebSafeBase64Unescape(Av(token.substr(dot + 1)), &sig) || sig.empty() ||
      !std::string_view(payload).starts_with(kMagic)) {
    return Unauthenticated("malformed");
  }
  SessionClaims c;
  Reader r(std::string_view(payload).substr(kMagic.size()));
  const bool parsed = r.Field(&c.key_id) && r.Field(&c.session_id) && r.Field(&c.account_id) &&
                      r.Time(&c.issued_at) && r.Time(&c.auth_time) && r.Time(&c.expires_at) &&
                      r.Byte(&c.assurance_level);
  if (!parsed || !r.done() || !IsHex32(c.session_id)) return Unauthenticated("malformed");

  auto key = keys_.find(c.key_id);
  if (key == keys_.end()) return Unauthenticated("signed by an unknown key");
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                                             key->second->pkey.get()) != 1) {
    return absl::InternalError("EVP_DigestVerifyInit failed");
  }
  if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(payload.data()),
                       payload.size()) != 1) {
    return Unauthenticated("signature does not verify");
  }
  if (now >= c.expires_at) return Unauthenticated("expired; log in again");
  if (c.issued_at > now + kMaxClockSkew) return Unauthenticated("issued in the future");
  if (revocations != nullptr && revocations->IsRevoked(c)) {
    return Unauthenticated("revoked (logged out); log in again");
  }
  return c;
}

}  // namespace qsign::auth
