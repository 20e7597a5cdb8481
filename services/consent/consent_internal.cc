#include "services/consent/consent_internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "hsm/key_encoding.h"

namespace qsign::consent {
namespace {

constexpr size_t kIdHexChars = 32;

bool WellFormedId(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + kIdHexChars || !id.starts_with(prefix)) return false;
  return std::all_of(id.begin() + static_cast<std::ptrdiff_t>(prefix.size()), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Number of UTF-8 characters, or -1 when `s` is not valid UTF-8 or holds control characters.
int Utf8Chars(std::string_view s) {
  int chars = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len == 0 || i + len > s.size()) return -1;
    if (len == 1 && (c < 0x20 || c == 0x7f)) return -1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return -1;
    }
    i += len;
    ++chars;
  }
  return chars;
}

OsslPtr<EVP_PKEY> ParseSpki(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OsslPtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key && p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) key.reset();
  return key;
}

}  // namespace

absl::StatusOr<std::string> NewId(std::string_view prefix) {
  unsigned char bytes[kIdHexChars / 2];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("no randomness");
  return absl::StrCat(Av(prefix), absl::BytesToHexString(absl::string_view(
                                      reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

absl::Status ValidateDeviceId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("device_id: required");
  if (!WellFormedId(id, kDevicePrefix)) {
    return absl::InvalidArgumentError("device_id: not a device id");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("request_id: required");
  if (!WellFormedId(id, kRequestPrefix)) {
    return absl::InvalidArgumentError("request_id: not a request id");
  }
  return absl::OkStatus();
}

absl::Status RequireOperator(const Caller& caller) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: an operator credential is required");
  }
  if (caller.kind != CallerKind::kOperator) {
    return absl::PermissionDeniedError("only operators may call this");
  }
  return absl::OkStatus();
}

absl::Status ValidateAccountId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (id.size() > 128) return absl::InvalidArgumentError("account_id: at most 128 characters");
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError("account_id: no spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateText(std::string_view value, std::string_view field, int min_chars,
                          int max_chars) {
  const int n = Utf8Chars(value);
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(field), ": must be UTF-8 text without control characters"));
  }
  if (n < min_chars || n > max_chars) {
    return absl::InvalidArgumentError(
        min_chars > 0 ? absl::StrCat(Av(field), ": ", min_chars, " to ", max_chars, " characters")
                      : absl::StrCat(Av(field), ": at most ", max_chars, " characters"));
  }
  return absl::OkStatus();
}

absl::Status ValidateDeviceKey(std::string_view spki) {
  absl::Status bad =
      absl::InvalidArgumentError("device_public_key: must be a P-256 SubjectPublicKeyInfo (DER)");
  if (spki.empty() || spki.size() > 512) return bad;
  OsslPtr<EVP_PKEY> key = ParseSpki(spki);
  if (!key || !EVP_PKEY_is_a(key.get(), "EC")) return bad;
  char group[64] = {};
  size_t group_len = 0;
  if (EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    return bad;
  }
  return absl::OkStatus();
}

absl::Status ValidateApprovalChallenge(std::string_view challenge) {
  if (challenge.size() != static_cast<size_t>(kApprovalChallengeBytes)) {
    return absl::InvalidArgumentError(
        "challenge: required, the 32 bytes GetApprovalChallenge answered");
  }
  return absl::OkStatus();
}

namespace {

// Device keys parsed from their SubjectPublicKeyInfo, by those exact bytes. OpenSSL 3's
// d2i_PUBKEY costs about two ECDSA verifications (its decoder looks up providers every time),
// and a device signs every approval with the same key. Emptied when full.
class DeviceKeyCache {
 public:
  static DeviceKeyCache& Global() {
    static auto* cache = new DeviceKeyCache;
    return *cache;
  }

  // A reference of its own to the key of `spki`, parsed now or before; null if it does not parse.
  OsslPtr<EVP_PKEY> Key(std::string_view spki) {
    {
      absl::MutexLock lock(&mu_);
      if (auto it = keys_.find(Av(spki)); it != keys_.end()) return Ref(it->second.get());
    }
    OsslPtr<EVP_PKEY> key = ParseSpki(spki);
    if (!key) return key;
    absl::MutexLock lock(&mu_);
    if (keys_.size() >= kMaxKeys) keys_.clear();
    if (!keys_.contains(Av(spki))) keys_.emplace(std::string(spki), Ref(key.get()));
    return key;
  }

 private:
  static constexpr size_t kMaxKeys = 4096;

  static OsslPtr<EVP_PKEY> Ref(EVP_PKEY* key) {
    EVP_PKEY_up_ref(key);
    return OsslPtr<EVP_PKEY>(key);
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, OsslPtr<EVP_PKEY>> keys_ ABSL_GUARDED_BY(mu_);
};

bool VerifyDer(EVP_PKEY* key, std::string_view message, std::string_view signature) {
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx || Sha256Md() == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, Sha256Md(), nullptr, key) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

}  // namespace

bool VerifyDeviceSignature(std::string_view spki, std::string_view message,
                           std::string_view signature) {
  if (signature.empty() || signature.size() > 80) return false;
  OsslPtr<EVP_PKEY> key = DeviceKeyCache::Global().Key(spki);
  if (!key) return false;
  if (VerifyDer(key.get(), message, signature)) return true;
  if (signature.size() != 64) return false;
  // WebCrypto's encoding of the same signature.
  absl::StatusOr<std::string> der = hsm::EcdsaRawToDer(signature);
  return der.ok() && VerifyDer(key.get(), message, *der);
}

absl::Status RequireService(const Caller& caller) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: a service credential is required");
  }
  if (caller.kind != CallerKind::kService) {
    return absl::PermissionDeniedError("only qsign services may call this");
  }
  return absl::OkStatus();
}

std::string RequesterOf(const Caller& caller) {
  return caller.kind == CallerKind::kUser ? absl::StrCat("user:", caller.id)
                                          : absl::StrCat("service:", caller.id);
}

std::string KindLabel(RequestKind kind) { return kind == RequestKind::kSign ? "sign" : "login"; }

}  // namespace qsign::consent
