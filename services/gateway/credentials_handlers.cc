// credentials/list, credentials/info, credentials/authorize and credentials/authorizeCheck: the
// user's credentials, and SCAL2 authorization by the user in the consent app.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/strings.h"
#include "services/gateway/credential_json.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

using ::qsign::FromProto;

namespace pb = ::qsign::v1;

int64_t SecondsUntil(absl::Time until, absl::Time now) {
  return std::max<int64_t>(1, absl::ToInt64Seconds(until - now));
}

}  // namespace

// ---- credentials/list ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsList(const CscRequest& request) const {
  auto call = Begin(request);
  if (!call.ok()) return call.status();
  Params p(call->body);
  // A token from a user's sign-in lists that user's credentials only; with client credentials
  // (where the operator allows them) the relying party names the user.
  const bool user_bound = !call->token.account_id.empty();
  auto named = user_bound
                   ? p.OptString("userID", kMaxIdBytes)
                   : absl::StatusOr<std::optional<std::string>>(p.String("userID", kMaxIdBytes));
  if (!named.ok()) return named.status();
  if (user_bound && named->has_value() && **named != call->token.account_id) {
    return InvalidParameter("userID", "not the user who signed in for this access token");
  }
  const std::string user = user_bound ? call->token.account_id : named->value_or("");
  if (std::any_of(user.begin(), user.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x21 || c == 0x7f; })) {
    return InvalidParameter("userID", "no spaces or control characters");
  }
  auto with_info = p.Bool("credentialInfo", false);
  if (!with_info.ok()) return with_info.status();
  auto options = ParseInfoOptions(p);
  if (!options.ok()) return options.status();
  auto only_valid = p.Bool("onlyValid", false);
  if (!only_valid.ok()) return only_valid.status();
  for (const char* text : {"lang", "clientData"}) {
    if (auto s = CheckOptionalText(p, text, kMaxClientDataBytes); !s.ok()) return s;
  }

  pb::ListCredentialsRequest req;
  req.set_account_id(user);
  req.set_only_active(*only_valid);
  auto list = backend_->ListCredentials(req);
  if (!list.ok()) return FromService("signer", list.status());

  const absl::Time now = clock_->Now();
  Json ids = Json::array();
  Json infos = Json::array();
  for (const auto& c : list->credentials()) {
    // A credential-scope token sees its one credential.
    if (call->token.scope == "credential" && c.credential_id() != call->token.credential_id) {
      continue;
    }
    ids.push_back(c.credential_id());
    if (*with_info) {
      auto info = CredentialJson(c, *options, config_.lang, now);
      if (!info.ok()) return info.status();
      (*info)["credentialID"] = c.credential_id();
      infos.push_back(*std::move(info));
    }
  }
  Json out = {{"credentialIDs", std::move(ids)}};
  if (*with_info) out["credentialInfos"] = std::move(infos);
  if (*only_valid) out["onlyValid"] = true;
  return Result{.body = std::move(out)};
}

// ---- credentials/info ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsInfo(const CscRequest& request) const {
  auto call = BeginOnCredential(request, /*fetch_info=*/true);
  if (!call.ok()) return call.status();
  Params p(call->body);
  auto options = ParseInfoOptions(p);
  if (!options.ok()) return options.status();
  for (const char* text : {"lang", "clientData"}) {
    if (auto s = CheckOptionalText(p, text, kMaxClientDataBytes); !s.ok()) return s;
  }
  auto out = CredentialJson(*call->credential, *options, config_.lang, clock_->Now());
  if (!out.ok()) return out.status();
  return Result{.body = *std::move(out)};
}

// ---- credentials/authorize (SCAL2, explicit authorization on the consent app) ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsAuthorize(const CscRequest& request) const {
  auto call = BeginOnCredential(request, /*fetch_info=*/false);
  if (!call.ok()) return call.status();
  const RelyingParty* client = &call->client;
  Params p(call->body);
  auto num_signatures = p.OptInteger("numSignatures");
  if (!num_signatures.ok()) return num_signatures.status();
  if (!num_signatures->has_value()) return MissingParameter("integer", "numSignatures");
  if (**num_signatures < 1) {
    return absl::InvalidArgumentError("Invalid value for parameter numSignatures");
  }
  // SCAL2: the SAD is bound to the hashes, so both are required.
  auto hash_oid = p.String("hashAlgorithmOID", 64);
  if (!hash_oid.ok()) return hash_oid.status();
  const HashOid* hash = FindHashOid(*hash_oid);
  if (hash == nullptr) {
    return InvalidParameter("hashAlgorithmOID",
                            "SHA-256, SHA-384 or SHA-512 (2.16.840.1.101.3.4.2.1/2/3)");
  }
  auto encoded = p.StringArray("hashes", config_.max_hashes, kMaxHashBase64Bytes);
  if (!encoded.ok()) return encoded.status();
  auto hashes = DecodeHashes(*encoded, *hash);
  if (!hashes.ok()) return hashes.status();
  if (static_cast<size_t>(**num_signatures) != hashes->size()) {
    return InvalidParameter("numSignatures",
                            "must equal the number of hashes (SCAL2: one signature per hash)");
  }
  // authData: nothing, or the empty PasswordOOB object "PIN" that credentials/info describes.
  // A PIN sent here is refused: it belongs in the consent app only.
  if (const Json* auth = p.Find("authData")) {
    if (!auth->is_array()) return MissingParameter("array", "authData");
    for (const Json& object : *auth) {
      if (!object.is_object()) return InvalidParameter("authData", "an array of objects");
      auto id = object.find("id");
      if (id == object.end() || !id->is_string() || id->get_ref<const std::string&>() != "PIN" ||
          object.size() != 1) {
        return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_authentication_data",
                         "The authentication data is invalid: the only authentication object is "
                         "{\"id\":\"PIN\"} with no value; the user enters the PIN in the "
                         "consent app");
      }
    }
  }
  auto description = p.OptString("description", size_t{4} * kMaxDescriptionChars);
  if (!description.ok()) return description.status();
  if (description->has_value() && !IsDisplayText(**description, 1, kMaxDescriptionChars)) {
    return InvalidParameter("description",
                            absl::StrCat("1 to ", kMaxDescriptionChars, " characters of text"));
  }
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;
  // The language of the text the user is shown in the app (and approves), as on oauth2/authorize.
  auto language = ConsentLanguageParam(p);
  if (!language.ok()) return language.status();

  pb::AuthorizeRequest req;
  req.set_language(*std::move(language));
  req.set_credential_id(call->credential_id);
  req.set_hash_algorithm_oid(hash->oid);
  for (auto& h : *hashes) req.add_hashes(std::move(h));
  req.set_num_signatures(static_cast<uint32_t>(**num_signatures));
  if (description->has_value()) {
    // The description is what the user is shown for each hash.
    for (int i = 0; i < req.hashes_size(); ++i) req.add_documents()->set_label(**description);
  }
  req.set_relying_party_name(client->name);
  req.mutable_client()->set_client_address(request.remote_address);
  req.mutable_client()->set_user_agent(absl::StrCat("CSC gateway client ", client->client_id));
  auto authorized = backend_->Authorize(req);
  if (!authorized.ok()) return FromService("consent", authorized.status());
  return AwaitOutcome(*client, authorized->request_id(), config_.authorize_wait);
}

// ---- credentials/authorizeCheck ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsAuthorizeCheck(
    const CscRequest& request) const {
  auto call = Begin(request);
  if (!call.ok()) return call.status();
  const RelyingParty* client = &call->client;
  Params p(call->body);
  auto handle = p.String("handle", 1024);
  if (!handle.ok()) return handle.status();
  auto request_id = tokens_->OpenHandle(client->client_id, *handle);
  if (!request_id.ok()) return InvalidParameter("handle");
  return AwaitOutcome(*client, *request_id, config_.authorize_check_wait);
}

absl::StatusOr<Gateway::Result> Gateway::AwaitOutcome(const RelyingParty& client,
                                                      const std::string& request_id,
                                                      absl::Duration wait) const {
  pb::AwaitAuthorizationRequest req;
  req.set_request_id(request_id);
  const timespec ts = absl::ToTimespec(wait);
  req.mutable_max_wait()->set_seconds(ts.tv_sec);
  req.mutable_max_wait()->set_nanos(static_cast<int32_t>(ts.tv_nsec));
  auto outcome = backend_->AwaitAuthorization(req);
  if (!outcome.ok()) {
    if (outcome.status().code() == absl::StatusCode::kNotFound) return InvalidParameter("handle");
    return FromService("consent", outcome.status());
  }
  switch (outcome->state()) {
    case pb::CONSENT_REQUEST_STATE_PENDING:
      return Result{.http_status = 202,
                    .body = {{"handle", tokens_->SealHandle(client.client_id, request_id)}}};
    case pb::CONSENT_REQUEST_STATE_APPROVED:
      if (outcome->sad().empty()) {
        return absl::FailedPreconditionError(
            "The SAD of this authorization has expired; authorize again");
      }
      return Result{.body = {{"SAD", outcome->sad()},
                             {"expiresIn",
                              SecondsUntil(FromProto(outcome->sad_expires_at()), clock_->Now())}}};
    case pb::CONSENT_REQUEST_STATE_DENIED:
      return absl::PermissionDeniedError(
          "The user refused the authorization in the consent app (or the PIN got blocked)");
    case pb::CONSENT_REQUEST_STATE_EXPIRED:
      return absl::PermissionDeniedError(
          "The user did not answer in time; the authorization expired");
    case pb::CONSENT_REQUEST_STATE_CANCELLED:
      return absl::PermissionDeniedError(
          "The authorization was cancelled: the user's consent app was replaced or deactivated");
    default:
      return absl::InternalError(
          absl::StrCat("consent: unexpected authorization state ", outcome->state()));
  }
}

}  // namespace qsign::gateway
