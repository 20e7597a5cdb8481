#include "consent/sad.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/echo.h"
#include "common/file.h"
#include "common/ossl.h"
#include "common/proto_time.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "google/protobuf/timestamp.pb.h"
#include "qsign/v1/sad.pb.h"

namespace qsign::consent {
namespace {

using ::qsign::FromProto;
using ::qsign::ToProto;
using ::qsign::v1::Refusal;

absl::StatusOr<std::string> Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (Sha256Md() == nullptr ||
      EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 Sha256Md(), nullptr) != 1) {
    return absl::InternalError("EVP_Digest(SHA-256) failed");
  }
  return out;
}

absl::StatusOr<OsslPtr<EVP_PKEY>> ParseP256Spki(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OsslPtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key == nullptr) return absl::InvalidArgumentError("SAD key: not a SubjectPublicKeyInfo");
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(key.get()) != 256) {
    return absl::InvalidArgumentError("SAD key: must be EC P-256");
  }
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SadMinter>> SadMinter::New(hsm::Hsm* hsm, std::string key_id) {
  auto pub = hsm->GetPublicKey(key_id);
  if (!pub.ok()) return pub.status();
  if (pub->type != hsm::KeyType::kEcP256) {
    return absl::FailedPreconditionError(
        absl::StrCat("SAD key ", key_id, " must be EC_P256, is ", Av(hsm::KeyTypeName(pub->type))));
  }
  return std::unique_ptr<SadMinter>(
      new SadMinter(hsm, std::move(key_id), std::move(pub->spki_der)));
}

absl::StatusOr<std::string> SadMinter::Mint(SadGrant grant, absl::Time now,
                                            absl::Duration lifetime) const {
  if (grant.account_id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (grant.credential_id.empty()) return absl::InvalidArgumentError("credential_id: required");
  if (grant.hash_algorithm_oid.empty()) {
    return absl::InvalidArgumentError("hash_algorithm_oid: required");
  }
  if (grant.hashes.empty() || grant.hashes.size() > kMaxSadHashes) {
    return absl::InvalidArgumentError(
        absl::StrCat("hashes: between 1 and ", kMaxSadHashes, " required"));
  }
  if (lifetime <= absl::ZeroDuration()) return absl::InvalidArgumentError("lifetime: positive");
  if (grant.num_signatures == 0) grant.num_signatures = static_cast<uint32_t>(grant.hashes.size());

  qsign::v1::SadClaims claims;
  std::string id(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(id.data()), 16) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  claims.set_sad_id(id);
  claims.set_account_id(grant.account_id);
  claims.set_credential_id(grant.credential_id);
  claims.set_hash_algorithm_oid(grant.hash_algorithm_oid);
  for (const auto& h : grant.hashes) claims.add_hashes(h);
  claims.set_num_signatures(grant.num_signatures);
  *claims.mutable_issued_at() = ToProto(now);
  *claims.mutable_expires_at() = ToProto(now + lifetime);
  claims.set_consent_request_id(grant.consent_request_id);

  qsign::v1::SignedSad signed_sad;
  if (!claims.SerializeToString(signed_sad.mutable_claims())) {
    return absl::InternalError("SadClaims serialization failed");
  }
  auto digest = Sha256(signed_sad.claims());
  if (!digest.ok()) return digest.status();
  auto sig = hsm_->SignDigest(
      key_id_,
      {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256, .ecdsa_der = true},
      *std::move(digest));
  if (!sig.ok()) return sig.status();
  signed_sad.set_key_id(key_id_);
  signed_sad.set_signature(*std::move(sig));
  return absl::WebSafeBase64Escape(signed_sad.SerializeAsString());
}

// A trusted key and its idle verify contexts: EVP_PKEY_CTX_new_from_pkey + EVP_PKEY_verify_init
// fetch the key management and the ECDSA implementation from the provider, so a context is made
// once and reused by one thread at a time (an ECDSA verify context keeps no state between calls).
struct SadVerifier::Key {
  OsslPtr<EVP_PKEY> pkey;
  absl::Mutex mu;
  std::vector<OsslPtr<EVP_PKEY_CTX>> idle ABSL_GUARDED_BY(mu);

  static constexpr size_t kMaxIdle = 64;

  OsslPtr<EVP_PKEY_CTX> Acquire() {
    {
      absl::MutexLock lock(&mu);
      if (!idle.empty()) {
        OsslPtr<EVP_PKEY_CTX> ctx = std::move(idle.back());
        idle.pop_back();
        return ctx;
      }
    }
    OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
    if (ctx == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1) return nullptr;
    return ctx;
  }
  void Release(OsslPtr<EVP_PKEY_CTX> ctx) {
    absl::MutexLock lock(&mu);
    if (idle.size() < kMaxIdle) idle.push_back(std::move(ctx));
  }
};

SadVerifier::SadVerifier(std::map<std::string, std::unique_ptr<Key>> keys) {
  for (auto& [id, key] : keys) keys_.emplace(id, std::move(key));
}
SadVerifier::~SadVerifier() = default;

absl::StatusOr<std::unique_ptr<SadVerifier>> SadVerifier::New(
    const std::map<std::string, std::string>& trusted_keys) {
  if (trusted_keys.empty()) return absl::InvalidArgumentError("SAD verifier: no trusted keys");
  std::map<std::string, std::unique_ptr<Key>> keys;
  for (const auto& [id, spki] : trusted_keys) {
    auto pkey = ParseP256Spki(spki);
    if (!pkey.ok()) return pkey.status();
    keys[id] = std::make_unique<Key>();
    keys[id]->pkey = *std::move(pkey);
  }
  if (Sha256Md() == nullptr) return absl::InternalError("EVP_MD_fetch(SHA256) failed");
  return std::unique_ptr<SadVerifier>(new SadVerifier(std::move(keys)));
}

absl::StatusOr<std::string> ReadSadPublicKeyFile(const std::string& path) {
  auto pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", Av(why)));
  };
  OsslPtr<BIO> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  if (bio == nullptr) return absl::InternalError("BIO_new_mem_buf failed");
  OsslPtr<EVP_PKEY> pkey;
  if (pem->find("-----BEGIN CERTIFICATE-----") != std::string::npos) {
    OsslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) return invalid("not a PEM certificate");
    pkey.reset(X509_get_pubkey(cert.get()));
  } else if (pem->find("-----BEGIN PUBLIC KEY-----") != std::string::npos) {
    pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  } else {
    return invalid("expected a PEM \"PUBLIC KEY\" or \"CERTIFICATE\"");
  }
  if (pkey == nullptr) return invalid("cannot read the public key");
  std::string spki = ToDer(pkey.get(), i2d_PUBKEY);
  if (spki.empty()) return invalid("cannot encode the public key");
  if (auto p256 = ParseP256Spki(spki); !p256.ok()) {
    return invalid(absl::StrCat("not an EC P-256 key (", p256.status().message(), ")"));
  }
  return spki;
}

absl::StatusOr<std::string> SadPublicKeyPem(std::string_view spki_der) {
  auto pkey = ParseP256Spki(std::string(spki_der));
  if (!pkey.ok()) return pkey.status();
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), pkey->get()) != 1) {
    return absl::InternalError("PEM_write_bio_PUBKEY failed");
  }
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

absl::StatusOr<SadGrant> SadVerifier::Verify(std::string_view sad, absl::Time now) const {
  if (sad.empty()) {
    return Refuse(absl::StatusCode::kInvalidArgument, Refusal::SAD_MISSING, "sad", "required");
  }
  std::string raw;
  qsign::v1::SignedSad signed_sad;
  if (sad.size() > 1 << 20 || !absl::WebSafeBase64Unescape(Av(sad), &raw) ||
      !signed_sad.ParseFromString(raw) || signed_sad.claims().empty() ||
      signed_sad.signature().empty()) {
    return Refuse(absl::StatusCode::kInvalidArgument, Refusal::SAD_MALFORMED, "sad",
                  "not a SAD issued by this service");
  }
  auto it = keys_.find(signed_sad.key_id());
  if (it == keys_.end()) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_UNKNOWN_KEY, "sad",
                  "signed by an unknown key");
  }
  const auto& sig = signed_sad.signature();
  const auto& claims_bytes = signed_sad.claims();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(claims_bytes.data(), claims_bytes.size(), digest, &digest_len, Sha256Md(),
                 nullptr) != 1) {
    return absl::InternalError("EVP_Digest(SHA-256) failed");
  }
  Key& key = *it->second;
  OsslPtr<EVP_PKEY_CTX> ctx = key.Acquire();
  if (ctx == nullptr) return absl::InternalError("EVP_PKEY_verify_init failed");
  const int verified =
      EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                      digest, digest_len);
  if (verified >= 0) key.Release(std::move(ctx));  // Below 0: an error; the context goes.
  if (verified != 1) ERR_clear_error();
  if (verified != 1) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_BAD_SIGNATURE, "sad",
                  "signature does not verify");
  }
  qsign::v1::SadClaims claims;
  if (!claims.ParseFromString(claims_bytes) || claims.sad_id().size() != 16) {
    return Refuse(absl::StatusCode::kInvalidArgument, Refusal::SAD_MALFORMED, "sad",
                  "claims are malformed");
  }
  SadGrant grant;
  grant.sad_id = claims.sad_id();
  grant.account_id = claims.account_id();
  grant.credential_id = claims.credential_id();
  grant.hash_algorithm_oid = claims.hash_algorithm_oid();
  grant.hashes.assign(claims.hashes().begin(), claims.hashes().end());
  grant.num_signatures = claims.num_signatures();
  grant.issued_at = FromProto(claims.issued_at());
  grant.expires_at = FromProto(claims.expires_at());
  grant.consent_request_id = claims.consent_request_id();
  if (now >= grant.expires_at) {
    return Refuse(
        absl::StatusCode::kPermissionDenied, Refusal::SAD_EXPIRED, "sad",
        absl::StrCat("expired at ", absl::FormatTime(grant.expires_at, absl::UTCTimeZone())));
  }
  // Tolerate small clock skew between replicas, no more.
  if (grant.issued_at > now + absl::Seconds(30)) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_NOT_YET_VALID, "sad",
                  "issued in the future");
  }
  return grant;
}

absl::Status CheckSadCovers(const SadGrant& grant, std::string_view account_id,
                            std::string_view credential_id, std::string_view hash_algorithm_oid,
                            const std::vector<std::string>& hashes) {
  if (grant.credential_id != credential_id) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_CREDENTIAL, "sad",
                  "issued for another credential");
  }
  if (grant.account_id != account_id) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_ACCOUNT, "sad",
                  "issued for another account");
  }
  if (grant.hash_algorithm_oid != hash_algorithm_oid) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_HASH_ALGORITHM, "sad",
                  absl::StrCat("issued for hash algorithm ", grant.hash_algorithm_oid, ", not ",
                               Echo(hash_algorithm_oid)));
  }
  if (hashes.size() > grant.num_signatures) {
    return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_TOO_MANY_SIGNATURES, "sad",
                  absl::StrCat("authorizes ", grant.num_signatures, " signatures, ", hashes.size(),
                               " requested"));
  }
  std::set<std::string_view> allowed(grant.hashes.begin(), grant.hashes.end());
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (!allowed.contains(hashes[i])) {
      return Refuse(absl::StatusCode::kPermissionDenied, Refusal::SAD_OTHER_HASHES, "sad",
                    absl::StrCat("hashes[", i, "] is not one the user approved"));
    }
  }
  return absl::OkStatus();
}

}  // namespace qsign::consent
