#include "services/signer/signer.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ossl.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "services/signer/algorithms.h"

namespace qsign::signer {
namespace {

absl::Time Asn1ToTime(const ASN1_TIME* t) {
  struct tm tm = {};
  ASN1_TIME_to_tm(t, &tm);
  return absl::FromTM(tm, absl::UTCTimeZone());
}

db::AuditEvent Audit(const Actor& actor, std::string action, std::string_view credential_id,
                     std::string details = "") {
  return db::AuditEvent{.actor = actor.name,
                        .action = std::move(action),
                        .target = std::string(credential_id),
                        .client_address = actor.address,
                        .outcome = "ok",
                        .details = std::move(details)};
}

bool AlgorithmFitsKey(hsm::SignScheme scheme, hsm::KeyType key) {
  return hsm::IsEc(key) == (scheme == hsm::SignScheme::kEcdsa);
}

enum class SadRefusal { kInvalid, kMismatch, kUsed };

// Handles made once, so that SignHash records with an atomic add and no lock.
class SignerMetrics {
 public:
  static const SignerMetrics& Get() {
    static const SignerMetrics* const instance = new SignerMetrics();
    return *instance;
  }
  metrics::Counter* signatures(hsm::KeyType type) const {
    return signatures_[static_cast<size_t>(type)];
  }
  metrics::Counter* refusals(SadRefusal reason) const {
    return refusals_[static_cast<size_t>(reason)];
  }

 private:
  SignerMetrics() {
    metrics::Registry& r = metrics::Registry::Global();
    for (hsm::KeyType type : {hsm::KeyType::kEcP256, hsm::KeyType::kEcP384, hsm::KeyType::kRsa2048,
                              hsm::KeyType::kRsa3072, hsm::KeyType::kRsa4096}) {
      signatures_[static_cast<size_t>(type)] =
          r.GetCounter("qsign_signer_signatures_total",
                       "Hashes signed by SignHash (one signature each), by key type.",
                       {{"key_type", std::string(hsm::KeyTypeName(type))}});
    }
    const char* const reasons[] = {"invalid", "mismatch", "used"};
    for (size_t i = 0; i < refusals_.size(); ++i) {
      refusals_[i] = r.GetCounter(
          "qsign_signer_sad_refusals_total",
          "SignHash calls refused over their SAD: invalid (malformed, not ours, expired), "
          "mismatch (other account, credential, algorithm or hashes), used (already used, or "
          "the credential no longer active).",
          {{"reason", reasons[i]}});
    }
  }

  std::array<metrics::Counter*, 5> signatures_{};  // Indexed by hsm::KeyType.
  std::array<metrics::Counter*, 3> refusals_{};    // Indexed by SadRefusal.
};

}  // namespace

absl::Status ValidateCredentialId(std::string_view id) {
  if (id.empty()) return InvalidField("credential_id", "required");
  if (id.size() > 64) return InvalidField("credential_id", "at most 64 characters");
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return InvalidField("credential_id", "only letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

std::string UserKeyId(std::string_view credential_id) {
  return absl::StrCat("user/", Av(credential_id));
}

Signer::Signer(hsm::Hsm* hsm, SignerStore* store, const consent::SadVerifier* sad_verifier,
               const Clock* clock, SignerConfig config, KeyPool* key_pool)
    : hsm_(hsm),
      store_(store),
      sad_verifier_(sad_verifier),
      clock_(clock),
      config_(config),
      key_pool_(key_pool) {}

absl::StatusOr<std::vector<Credential>> Signer::ListCredentials(std::string_view account_id,
                                                                bool only_active) {
  if (account_id.empty()) return InvalidField("account_id", "required");
  if (account_id.size() > 128) return InvalidField("account_id", "too long");
  auto creds = store_->ListCredentials(account_id, only_active);
  if (!creds.ok()) return creds.status();
  const absl::Time now = clock_->Now();
  std::vector<Credential> out;
  for (Credential& c : *creds) {
    c.status = EffectiveStatus(c, now);
    if (only_active && c.status != CredentialStatus::kActive) continue;
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<Credential> Signer::GetCredentialInfo(std::string_view credential_id) {
  if (auto s = ValidateCredentialId(credential_id); !s.ok()) return s;
  auto cred = store_->GetCredential(credential_id);
  if (!cred.ok()) return cred.status();
  cred->status = EffectiveStatus(*cred, clock_->Now());
  return cred;
}

absl::StatusOr<Signer::KeyRef> Signer::LookupKey(std::string_view credential_id) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = keys_.find(Av(credential_id));
    if (it != keys_.end()) return it->second;
  }
  auto cred = store_->GetCredential(credential_id);
  if (!cred.ok()) return cred.status();
  KeyRef ref{cred->account_id, cred->key_type, cred->valid_from, cred->valid_to};
  // Validity is fixed once a certificate is attached; before that the ref is not cached.
  if (!cred->valid_to.has_value()) return ref;
  absl::MutexLock lock(&mu_);
  keys_.emplace(std::string(credential_id), ref);
  return ref;
}

absl::StatusOr<std::vector<std::string>> Signer::SignHash(const SignHashInput& in) {
  // 1. The request on its own.
  if (auto s = ValidateCredentialId(in.credential_id); !s.ok()) return s;
  if (in.hashes.empty()) return InvalidField("hashes", "at least one hash required");
  if (static_cast<int>(in.hashes.size()) > config_.max_batch) {
    return InvalidField("hashes", absl::StrCat("at most ", config_.max_batch, " per request, got ",
                                               in.hashes.size()));
  }
  auto hash = ParseHashOid(in.hash_algorithm_oid);
  if (!hash.ok()) return hash.status();
  const size_t digest_len = hsm::DigestLength(*hash);
  std::set<std::string_view> seen;
  for (size_t i = 0; i < in.hashes.size(); ++i) {
    if (in.hashes[i].size() != digest_len) {
      return InvalidField(
          absl::StrCat("hashes[", i, "]"),
          absl::StrCat(in.hashes[i].size(), " bytes, the hash algorithm needs ", digest_len));
    }
    if (!seen.insert(in.hashes[i]).second) {
      return InvalidField(absl::StrCat("hashes[", i, "]"), "duplicate");
    }
  }
  auto algo = ParseSignOid(in.sign_algorithm_oid);
  if (!algo.ok()) return algo.status();
  if (algo->hash.has_value() && *algo->hash != *hash) {
    return InvalidField("sign_algorithm_oid", "its hash differs from hash_algorithm_oid");
  }
  if (in.sad.empty()) {
    return Refuse(absl::StatusCode::kInvalidArgument, v1::Refusal::SAD_MISSING, "sad", "required");
  }

  // 2. The credential, and now within its certificate's validity (checked again, atomically
  // with the status, in step 4).
  const absl::Time now = clock_->Now();
  auto key = LookupKey(in.credential_id);
  if (!key.ok()) return key.status();
  if (!AlgorithmFitsKey(algo->scheme, key->key_type)) {
    return InvalidField("sign_algorithm_oid",
                        absl::StrCat("does not fit the credential's ",
                                     Av(hsm::KeyTypeName(key->key_type)), " key"));
  }
  if (auto s = CheckValidity(Credential{.credential_id = in.credential_id,
                                        .valid_from = key->valid_from,
                                        .valid_to = key->valid_to},
                             now);
      !s.ok()) {
    return s;
  }

  // 3. The SAD: genuine, current, and covering exactly this request.
  const SignerMetrics& counted = SignerMetrics::Get();
  auto grant = sad_verifier_->Verify(in.sad, now);
  if (!grant.ok()) {
    counted.refusals(SadRefusal::kInvalid)->Increment();
    return grant.status();
  }
  if (auto s = consent::CheckSadCovers(*grant, key->account_id, in.credential_id,
                                       in.hash_algorithm_oid, in.hashes);
      !s.ok()) {
    counted.refusals(SadRefusal::kMismatch)->Increment();
    return s;
  }

  // 4. Used once, by any replica; also refuses a credential that is no longer active.
  if (auto s = store_->ConsumeSad({.sad_id = grant->sad_id,
                                   .credential_id = in.credential_id,
                                   .account_id = key->account_id,
                                   .consent_request_id = grant->consent_request_id,
                                   .num_hashes = static_cast<int>(in.hashes.size()),
                                   .used_at = now,
                                   .sad_expires_at = grant->expires_at,
                                   .caller = in.caller});
      !s.ok()) {
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      counted.refusals(SadRefusal::kUsed)->Increment();
    }
    return s;
  }

  // 5. Only now the key.
  auto signatures = hsm_->SignDigests(
      UserKeyId(in.credential_id),
      {.scheme = algo->scheme, .hash = *hash, .ecdsa_der = !in.ecdsa_raw_signature}, in.hashes);
  if (signatures.ok()) {
    counted.signatures(key->key_type)->Increment(static_cast<double>(signatures->size()));
    return signatures;
  }
  // The HSM made no signature: the journal must not say the SAD signed. If the release fails too
  // the SAD stays used (never twice, at worst once for nothing).
  if (auto released = store_->ReleaseSad(grant->sad_id); !released.ok()) {
    Log(LogLevel::kError, "signer", "SAD not released after an HSM failure",
        {{"credential_id", in.credential_id}, {"status", released.ToString()}});
  }
  return signatures;
}

absl::StatusOr<hsm::PublicKey> Signer::NewUserKey(const std::string& key_id,
                                                  hsm::KeyType key_type) {
  if (key_pool_ != nullptr) {
    // Taken out of the pool for good: whatever happens next, no other call gets this key.
    if (std::optional<PooledKey> pooled = key_pool_->Take(key_type)) {
      absl::Status renamed = hsm_->RenameKeyPair(pooled->key_id, key_id);
      if (renamed.code() == absl::StatusCode::kAlreadyExists) {
        // A key from an attempt that crashed before it was recorded: never reuse it. Only ever
        // a user key: the id is in the user namespace.
        absl::Status destroyed = hsm_->DestroyKeyPair(key_id);
        if (destroyed.ok() || destroyed.code() == absl::StatusCode::kNotFound) {
          renamed = hsm_->RenameKeyPair(pooled->key_id, key_id);
        }
      }
      if (renamed.ok()) return pooled->public_key;
      Log(LogLevel::kWarning, "signer", "pool key not renamed; generating the key instead",
          {{"key_id", pooled->key_id}, {"status", renamed.ToString()}});
      // Whatever is left of it; a half renamed to `key_id` goes with the ALREADY_EXISTS below.
      (void)hsm_->DestroyKeyPair(pooled->key_id);
    }
  }
  auto pub = hsm_->GenerateKeyPair(key_id, key_type);
  if (pub.status().code() == absl::StatusCode::kAlreadyExists) {
    // A key from an attempt that crashed before it was recorded: never reuse it.
    if (auto s = hsm_->DestroyKeyPair(key_id); !s.ok()) return s;
    pub = hsm_->GenerateKeyPair(key_id, key_type);
  }
  return pub;
}

absl::StatusOr<Credential> Signer::CreateKey(std::string_view credential_id,
                                             std::string_view account_id, hsm::KeyType key_type,
                                             const Actor& actor) {
  if (auto s = ValidateCredentialId(credential_id); !s.ok()) return s;
  if (account_id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (account_id.size() > 128) return absl::InvalidArgumentError("account_id: too long");
  // A retried CreateKey for the same account finds the credential it created.
  if (auto existing = store_->GetCredential(credential_id); existing.ok()) {
    if (existing->account_id != account_id || existing->key_type != key_type) {
      return absl::AlreadyExistsError(
          absl::StrCat("credential_id: ", Echo(credential_id), " exists with other parameters"));
    }
    return existing;
  } else if (existing.status().code() != absl::StatusCode::kNotFound) {
    return existing.status();
  }

  const std::string key_id = UserKeyId(credential_id);
  auto pub = NewUserKey(key_id, key_type);
  if (!pub.ok()) {
    const absl::StatusCode code = pub.status().code();
    if (code != absl::StatusCode::kInternal && code != absl::StatusCode::kUnknown &&
        code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kUnavailable) {
      return pub.status();
    }
    // The module failed the generation (e.g. SoftHSM2 losing a race on its object store): remove
    // whatever it may have left under this user key id and say it is worth a retry.
    Log(LogLevel::kWarning, "signer", "key generation failed",
        {{"credential_id", std::string(credential_id)}, {"status", pub.status().ToString()}});
    (void)hsm_->DestroyKeyPair(key_id);
    return absl::UnavailableError(absl::StrCat("credential_id: ", Av(credential_id),
                                               ": the HSM did not generate the key; nothing was "
                                               "kept, retry"));
  }
  Credential cred{.credential_id = std::string(credential_id),
                  .account_id = std::string(account_id),
                  .status = CredentialStatus::kPending,
                  .key_type = key_type,
                  .public_key_spki = pub->spki_der,
                  .created_at = clock_->Now()};
  auto s = store_->CreateCredential(
      cred,
      Audit(actor, "signer.create_key", credential_id,
            absl::StrCat("account=", Av(account_id), " key=", Av(hsm::KeyTypeName(key_type)))));
  if (!s.ok()) {
    // Nothing half-written: a key without its record is removed.
    (void)hsm_->DestroyKeyPair(key_id);
    return s;
  }
  return cred;
}

absl::StatusOr<int> Signer::SweepOrphanKeys() {
  absl::MutexLock lock(&sweep_mu_);
  const std::string prefix = UserKeyId("");
  auto key_ids = hsm_->ListKeyIds(prefix);
  if (!key_ids.ok()) return key_ids.status();
  absl::flat_hash_set<std::string> unrecorded;
  int destroyed = 0;
  absl::Status first_error;
  for (const std::string& key_id : *key_ids) {
    const std::string credential_id = key_id.substr(prefix.size());
    auto credential = store_->GetCredential(credential_id);
    if (credential.ok()) continue;
    if (credential.status().code() != absl::StatusCode::kNotFound) {
      first_error.Update(credential.status());
      continue;
    }
    if (!orphan_suspects_.contains(key_id)) {
      unrecorded.insert(key_id);  // Perhaps a CreateKey in flight: decided at the next sweep.
      continue;
    }
    if (!DestroyOrphan(key_id, credential_id, "a key without a credential record", first_error)) {
      unrecorded.insert(key_id);  // Retried at the next sweep.
      continue;
    }
    ++destroyed;
  }
  orphan_suspects_ = std::move(unrecorded);

  // Pool keys no running pool keeps: a pool destroys its keys at max_age (and when it stops), so
  // one made more than twice max_age ago was left by a process that died.
  const absl::Duration pool_max_age =
      key_pool_ != nullptr ? key_pool_->config().max_age : KeyPoolConfig{}.max_age;
  auto pool_ids = hsm_->ListKeyIds(KeyPool::Prefix());
  if (!pool_ids.ok()) {
    first_error.Update(pool_ids.status());
  } else {
    const absl::Time oldest_kept = clock_->Now() - 2 * pool_max_age;
    for (const std::string& key_id : *pool_ids) {
      std::optional<absl::Time> made_at = KeyPool::MadeAt(key_id);
      if (!made_at.has_value() || *made_at >= oldest_kept) continue;
      if (DestroyOrphan(key_id, key_id, "an unused pool key no running pool keeps", first_error)) {
        ++destroyed;
      }
    }
  }
  if (!first_error.ok()) return first_error;
  return destroyed;
}

bool Signer::DestroyOrphan(const std::string& key_id, const std::string& target,
                           std::string_view why, absl::Status& error) {
  // Recorded first: a destruction is never unaudited (a failed one is recorded again when the
  // next sweep retries it).
  if (auto s = store_->RecordAudit(
          Audit(Actor{.name = "signer"}, "signer.destroy_orphan_key", target, std::string(why)),
          clock_->Now());
      !s.ok()) {
    error.Update(s);
    return false;
  }
  if (auto s = hsm_->DestroyKeyPair(key_id); !s.ok() && s.code() != absl::StatusCode::kNotFound) {
    error.Update(s);
    return false;
  }
  Log(LogLevel::kWarning, "signer", "orphan key destroyed",
      {{"key_id", key_id}, {"why", std::string(why)}});
  return true;
}

absl::StatusOr<Credential> Signer::SetCertificate(std::string_view credential_id,
                                                  std::vector<std::string> chain_der,
                                                  const Actor& actor) {
  if (auto s = ValidateCredentialId(credential_id); !s.ok()) return s;
  if (chain_der.empty()) {
    return absl::InvalidArgumentError("certificate_chain_der: the end-entity certificate first");
  }
  auto cred = store_->GetCredential(credential_id);
  if (!cred.ok()) return cred.status();
  if (cred->status == CredentialStatus::kDisabled || cred->status == CredentialStatus::kExpired) {
    return absl::FailedPreconditionError(absl::StrCat(
        "credential is ", Av(CredentialStatusName(cred->status)), "; it never signs again"));
  }
  for (size_t i = 0; i < chain_der.size(); ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(chain_der[i].data());
    OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(chain_der[i].size())));
    if (cert == nullptr ||
        p != reinterpret_cast<const unsigned char*>(chain_der[i].data()) + chain_der[i].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate_chain_der[", i, "]: not a DER certificate"));
    }
    if (i > 0) continue;
    // The end-entity certificate must certify this credential's key.
    const auto* k = reinterpret_cast<const unsigned char*>(cred->public_key_spki.data());
    OsslPtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &k, static_cast<long>(cred->public_key_spki.size())));
    if (key == nullptr || EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()) != 1) {
      return absl::InvalidArgumentError(
          "certificate_chain_der[0]: its public key is not the credential's key");
    }
    cred->valid_from = Asn1ToTime(X509_get0_notBefore(cert.get()));
    cred->valid_to = Asn1ToTime(X509_get0_notAfter(cert.get()));
  }
  if (auto s = store_->ActivateCredential(
          credential_id, chain_der, *cred->valid_from, *cred->valid_to,
          Audit(actor, "signer.set_certificate", credential_id,
                absl::StrCat("valid_to=", absl::FormatTime(absl::RFC3339_sec, *cred->valid_to,
                                                           absl::UTCTimeZone()))));
      !s.ok()) {
    return s;
  }
  return store_->GetCredential(credential_id);
}

absl::StatusOr<Credential> Signer::DisableCredential(std::string_view credential_id,
                                                     const Actor& actor) {
  if (auto s = ValidateCredentialId(credential_id); !s.ok()) return s;
  // The status is read in the statement that consumes a SAD: once this commits, no replica signs.
  if (auto s = store_->DisableCredential(credential_id, CredentialStatus::kDisabled,
                                         Audit(actor, "signer.disable", credential_id));
      !s.ok()) {
    return s;
  }
  return store_->GetCredential(credential_id);
}

absl::StatusOr<Credential> Signer::DestroyKey(std::string_view credential_id, const Actor& actor,
                                              DestroyReason reason) {
  if (auto s = ValidateCredentialId(credential_id); !s.ok()) return s;
  auto cred = store_->GetCredential(credential_id);
  if (!cred.ok()) return cred.status();
  const bool expired = reason == DestroyReason::kExpired;
  if (expired && !(cred->valid_to.has_value() && clock_->Now() > *cred->valid_to)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "reason: credential ", Av(credential_id), " has not expired",
        cred->valid_to.has_value()
            ? absl::StrCat(
                  " (valid until ",
                  Av(absl::FormatTime(absl::RFC3339_sec, *cred->valid_to, absl::UTCTimeZone())),
                  ")")
            : " (no certificate)"));
  }
  // Disable first: from here no replica consumes a SAD for it, even if the HSM call fails.
  if (auto s = store_->DisableCredential(
          credential_id, expired ? CredentialStatus::kExpired : CredentialStatus::kDisabled,
          Audit(actor, expired ? "signer.expire" : "signer.disable", credential_id));
      !s.ok()) {
    return s;
  }
  if (auto s = hsm_->DestroyKeyPair(UserKeyId(credential_id));
      !s.ok() && s.code() != absl::StatusCode::kNotFound) {
    return s;
  }
  {
    absl::MutexLock lock(&mu_);
    keys_.erase(std::string(credential_id));
  }
  if (auto s = store_->MarkKeyDestroyed(
          credential_id, clock_->Now(),
          Audit(actor, "signer.destroy_key", credential_id, expired ? "reason=expired" : ""));
      !s.ok()) {
    return s;
  }
  return store_->GetCredential(credential_id);
}

}  // namespace qsign::signer
