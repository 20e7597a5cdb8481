// Signing authorization: a SIGN request for a credential's hashes, and the SAD once approved.

#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/oids.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {
namespace {

// A document's page count as shown to the user (DocumentInfo.page_count).
constexpr uint32_t kMaxPageCount = 1000000;

absl::Status ValidateCredentialId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("credential_id: required");
  if (id.size() > 64) return absl::InvalidArgumentError("credential_id: at most 64 characters");
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError("credential_id: only letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

size_t HashLength(std::string_view oid) {
  const oid::HashOid* hash = oid::FindHashOid(oid);
  return hash == nullptr ? 0 : hash->length;
}

}  // namespace

absl::StatusOr<AuthorizeResult> Consent::Authorize(const Caller& caller, const AuthorizeInput& in,
                                                   const ClientInfo& client) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: a session or service credential is required");
  }
  if (caller.kind == CallerKind::kOperator) {
    return absl::PermissionDeniedError("operators cannot authorize signatures");
  }
  if (auto s = ValidateCredentialId(in.credential_id); !s.ok()) return s;
  const size_t hash_len = HashLength(in.hash_algorithm_oid);
  if (hash_len == 0) {
    return absl::InvalidArgumentError(
        "hash_algorithm_oid: SHA-256, SHA-384 or SHA-512 (2.16.840.1.101.3.4.2.1/2/3)");
  }
  if (in.hashes.empty()) return absl::InvalidArgumentError("hashes: at least one hash required");
  if (in.hashes.size() > kMaxSadHashes) {
    return absl::InvalidArgumentError(absl::StrCat("hashes: at most ", kMaxSadHashes));
  }
  std::set<std::string_view> seen;
  for (size_t i = 0; i < in.hashes.size(); ++i) {
    if (in.hashes[i].size() != hash_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hashes[", i, "]: ", in.hashes[i].size(), " bytes, the hash algorithm needs ", hash_len));
    }
    if (!seen.insert(in.hashes[i]).second) {
      return absl::InvalidArgumentError(absl::StrCat("hashes[", i, "]: duplicate"));
    }
  }
  if (in.num_signatures != 0 && in.num_signatures != in.hashes.size()) {
    return absl::InvalidArgumentError(
        "num_signatures: must equal the number of hashes (or 0 for that number)");
  }
  if (!in.documents.empty() && in.documents.size() != in.hashes.size()) {
    return absl::InvalidArgumentError("documents: none, or one per hash");
  }
  for (size_t i = 0; i < in.documents.size(); ++i) {
    const DocumentInfo& d = in.documents[i];
    const std::string field = absl::StrCat("documents[", i, "]");
    if (auto s = ValidateText(d.label, absl::StrCat(field, ".label"), 1, 200); !s.ok()) return s;
    if (auto s = ValidateText(d.document_name, absl::StrCat(field, ".document_name"), 0, 255);
        !s.ok()) {
      return s;
    }
    if (!d.document_digest.empty() && d.document_digest.size() != hash_len) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".document_digest: empty or of the hash algorithm's length"));
    }
    if (d.page_count > kMaxPageCount) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".page_count: at most ", kMaxPageCount));
    }
  }
  if (auto s = ValidateText(in.relying_party_name, "relying_party_name", 0, 200); !s.ok()) {
    return s;
  }
  auto lang = ParseDisplayLanguage(in.language);
  if (!lang.ok()) return lang.status();

  // The credential: a user's own only (another's does not exist for them), and usable.
  const absl::Status no_credential =
      Refuse(absl::StatusCode::kNotFound, v1::Refusal::CREDENTIAL_NOT_FOUND, "credential_id",
             "no such credential");
  auto credential = deps_.credentials->Lookup(in.credential_id);
  if (!credential.ok()) {
    return credential.status().code() == absl::StatusCode::kNotFound ? no_credential
                                                                     : credential.status();
  }
  if (caller.kind == CallerKind::kUser && credential->account_id != caller.id) {
    return no_credential;
  }
  // A certificate that ended (or has not begun) gets no push: the signer would refuse anyway.
  const absl::Time now = Now();
  if (credential->valid_to.has_value() && now > *credential->valid_to) {
    return Refuse(
        absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_EXPIRED, "credential_id",
        absl::StrCat(
            "credential ", Av(in.credential_id), " expired at ",
            absl::FormatTime(absl::RFC3339_sec, *credential->valid_to, absl::UTCTimeZone())));
  }
  if (credential->valid_from.has_value() && now < *credential->valid_from) {
    return Refuse(absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_NOT_YET_VALID,
                  "credential_id",
                  absl::StrCat("credential ", Av(in.credential_id), " is not yet valid (from ",
                               absl::FormatTime(absl::RFC3339_sec, *credential->valid_from,
                                                absl::UTCTimeZone()),
                               ")"));
  }
  if (!credential->active) {
    return Refuse(absl::StatusCode::kFailedPrecondition, v1::Refusal::CREDENTIAL_INACTIVE,
                  "credential_id", "the credential is not active");
  }
  if (static_cast<int>(in.hashes.size()) > credential->max_hashes_per_authorization) {
    return InvalidField(
        "hashes", absl::StrCat("the credential allows at most ",
                               credential->max_hashes_per_authorization, " per authorization"));
  }
  // Counted per account whoever asks (the user or an e-service for them), before the push.
  if (auto s = authorize_limiter_.Acquire(credential->account_id, now,
                                          "too many signing requests for this account");
      !s.ok()) {
    return s;
  }
  Statement st{.kind = RequestKind::kSign,
               .created_at = now,
               .expires_at = TruncateToMicros(now + config_.sign_lifetime),
               .sign = {.credential_id = in.credential_id,
                        .relying_party_name = in.relying_party_name,
                        .hash_algorithm_oid = in.hash_algorithm_oid,
                        .hashes = in.hashes,
                        .documents = in.documents}};
  st.display_text = SignDisplayText(st.sign, *lang);
  auto record = CreateRequest(std::move(st), credential->account_id, RequesterOf(caller));
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::FailedPreconditionError(
          "credential_id: the credential's owner has no active consent app");
    }
    return record.status();
  }
  return AuthorizeResult{.request_id = record->request_id, .expires_at = record->expires_at};
}

std::shared_ptr<WaitHandle> Consent::AwaitAuthorization(std::string authorization,
                                                        std::string request_id,
                                                        absl::Duration max_wait,
                                                        AuthorizationDone done) {
  return AwaitAsCaller(
      std::move(authorization), std::move(request_id), max_wait,
      [](const Caller& caller) -> absl::StatusOr<MaySee> {
        if (caller.kind == CallerKind::kAnonymous) {
          return absl::UnauthenticatedError(
              "authorization: a session or service credential is required");
        }
        if (caller.kind == CallerKind::kOperator) {
          return absl::PermissionDeniedError("operators cannot authorize signatures");
        }
        return MaySee([requester = RequesterOf(caller)](const RequestRecord& r) -> absl::Status {
          if (r.requester != requester) return absl::NotFoundError("request_id: no such request");
          if (r.kind != RequestKind::kSign) {
            return absl::FailedPreconditionError("request_id: not a SIGN request");
          }
          return absl::OkStatus();
        });
      },
      [this, done = std::move(done)](absl::StatusOr<RequestRecord> record) mutable {
        if (!record.ok()) {
          if (record.status().code() == absl::StatusCode::kNotFound) {
            return std::move(done)(absl::NotFoundError("request_id: no such request"));
          }
          return std::move(done)(record.status());
        }
        const absl::Time now = Now();
        AuthorizationOutcome out{.state = EffectiveState(*record, now)};
        if (out.state == RequestState::kApproved && record->sad_expires_at &&
            now < *record->sad_expires_at) {
          out.sad = record->sad;
          out.sad_expires_at = record->sad_expires_at;
        }
        std::move(done)(std::move(out));
      });
}

absl::Status Consent::MintSad(std::string_view request_id, const RequestRecord& request,
                              absl::Time now, RequestDecision* decision,
                              std::string* details) const {
  auto statement = DecodeStatement(request.statement);
  if (!statement.ok()) {
    return absl::InternalError(
        absl::StrCat("stored statement of ", Av(request_id), ": ", statement.status().message()));
  }
  const SignDetails& sign = statement->sign;
  auto sad =
      deps_.sad_minter->Mint(SadGrant{.account_id = request.account_id,
                                      .credential_id = sign.credential_id,
                                      .hash_algorithm_oid = sign.hash_algorithm_oid,
                                      .hashes = sign.hashes,
                                      .num_signatures = static_cast<uint32_t>(sign.hashes.size()),
                                      .consent_request_id = std::string(request_id)},
                             now, config_.sad_lifetime);
  if (!sad.ok()) return sad.status();
  decision->sad = *std::move(sad);
  decision->sad_expires_at = now + config_.sad_lifetime;
  *details = absl::StrCat("credential ", sign.credential_id, ", ", sign.hashes.size(), " hashes");
  return absl::OkStatus();
}

}  // namespace qsign::consent
