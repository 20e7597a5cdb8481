// signatures/signDoc: the gateway builds the signatures itself — PAdES for PDFs (signature_format
// "P"), detached CAdES for any file ("C") — at Ades-B-B, -B-T or -B-LT. SCAL2 with the container
// made here means the user must approve the hashes of the signed attributes, which only exist
// once the gateway has the documents: so signDoc asks the user itself (one consent request for
// all documents, each shown with its page count and SHA-256), waits for the decision, and signs.
// It takes no SAD (docs/csc.md).
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/oids.h"
#include "common/signdoc/signdoc.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;
using signdoc::DocFormat;
using signdoc::DocLevel;
using signdoc::DocumentToSign;
using signdoc::SignDoc;
using signdoc::SignDocTimings;
using signdoc::SignedDocument;

// CSC 2.0 conformance levels this gateway makes, as info lists them.
constexpr const char* kLevels[] = {"Ades-B-B", "Ades-B-T", "Ades-B-LT"};

absl::StatusOr<DocLevel> LevelOf(std::string_view level, const std::string& field) {
  const std::string l = absl::AsciiStrToLower(std::string(level));
  if (l == "ades-b-b" || l == "ades-b") return DocLevel::kBB;
  if (l == "ades-b-t" || l == "ades-t") return DocLevel::kBT;
  if (l == "ades-b-lt" || l == "ades-lt") return DocLevel::kBLT;
  return InvalidParameter(field, "Ades-B-B, Ades-B-T or Ades-B-LT (info lists the levels)");
}

std::string Millis(absl::Duration d) {
  return absl::StrFormat("%.1f", absl::ToDoubleMilliseconds(d));
}

}  // namespace

Json SignDocFormatsInfo() {
  return {
      {"formats", Json::array({"C", "P"})},
      {"envelope_properties", Json::array({Json::array({"Detached"}), Json::array({"Revision"})})}};
}

Json SignDocLevelsInfo(bool with_tsa) {
  Json levels = Json::array();
  for (const char* l : kLevels) {
    if (with_tsa || std::string_view(l) == "Ades-B-B") levels.push_back(l);
  }
  return levels;
}

absl::StatusOr<Gateway::Result> Gateway::SignaturesSignDoc(const CscRequest& request) const {
  const absl::Time started = absl::Now();
  auto call = BeginOnCredential(request, /*fetch_info=*/true);
  if (!call.ok()) return call.status();
  const RelyingParty* client = &call->client;
  Params p(call->body);
  if (p.Find("SAD") != nullptr) {
    return InvalidParameter("SAD",
                            "signDoc asks the user itself (the user approves the signed "
                            "attributes the gateway makes); call it without a SAD");
  }
  if (p.Find("documentDigests") != nullptr) {
    return InvalidParameter("documentDigests",
                            "not supported: send the documents (signHash signs digests)");
  }
  auto mode = p.OptString("operationMode", 8);
  if (!mode.ok()) return mode.status();
  if (mode->has_value() && **mode != "S") {
    return InvalidParameter("operationMode", "only synchronous signing (\"S\") is supported");
  }
  auto description = p.OptString("description", size_t{4} * kMaxDescriptionChars);
  if (!description.ok()) return description.status();
  if (description->has_value() && !IsDisplayText(**description, 1, kMaxDescriptionChars)) {
    return InvalidParameter("description",
                            absl::StrCat("1 to ", kMaxDescriptionChars, " characters of text"));
  }
  auto return_validation = p.Bool("returnValidationInfo", false);
  if (!return_validation.ok()) return return_validation.status();
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;
  // The language of the text the user approves in the app, as on credentials/authorize.
  auto language = ConsentLanguageParam(p);
  if (!language.ok()) return language.status();

  const Json* docs = p.Find("documents");
  if (docs == nullptr || !docs->is_array() || docs->empty()) {
    return MissingParameter("array", "documents");
  }
  if (static_cast<int>(docs->size()) > config_.signdoc_max_documents) {
    return InvalidParameter("documents", absl::StrCat("at most ", config_.signdoc_max_documents,
                                                      " documents in one call"));
  }
  std::vector<DocumentToSign> inputs;
  for (size_t i = 0; i < docs->size(); ++i) {
    const std::string field = absl::StrCat("documents[", i, "]");
    if (!(*docs)[i].is_object()) return InvalidParameter(field, "an object");
    Params d((*docs)[i]);
    auto encoded = d.String("document", size_t{2} * config_.signdoc_max_document_bytes + 16);
    if (!encoded.ok()) {
      if (const Json* raw = d.Find("document"); raw != nullptr && raw->is_string()) {
        return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request",
                         absl::StrCat("Document ", i + 1, " is larger than ",
                                      config_.signdoc_max_document_bytes, " bytes"),
                         413);
      }
      return MissingParameter("string", absl::StrCat(field, ".document"));
    }
    auto content = DecodeBase64(*encoded);
    if (!content.has_value())
      return InvalidParameter(absl::StrCat(field, ".document"), "not Base64");
    if (content->size() > config_.signdoc_max_document_bytes) {
      return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_request",
                       absl::StrCat("Document ", i + 1, " is larger than ",
                                    config_.signdoc_max_document_bytes, " bytes"),
                       413);
    }
    auto format = d.String("signature_format", 4);
    if (!format.ok()) return MissingParameter("string", absl::StrCat(field, ".signature_format"));
    DocumentToSign doc{.content = *std::move(content)};
    if (*format == "P") {
      doc.format = DocFormat::kPades;
    } else if (*format == "C") {
      doc.format = DocFormat::kCades;
    } else {
      return InvalidParameter(absl::StrCat(field, ".signature_format"),
                              "\"P\" (PAdES) or \"C\" (CAdES detached)");
    }
    auto level = d.OptString("conformance_level", 16);
    if (!level.ok()) return level.status();
    if (level->has_value()) {
      auto l = LevelOf(**level, absl::StrCat(field, ".conformance_level"));
      if (!l.ok()) return l.status();
      doc.level = *l;
    }
    if (doc.level != DocLevel::kBB && config_.tsa_url.empty()) {
      return InvalidParameter(absl::StrCat(field, ".conformance_level"),
                              "this gateway has no timestamp authority: Ades-B-B only");
    }
    auto envelope = d.OptString("signed_envelope_property", 32);
    if (!envelope.ok()) return envelope.status();
    if (envelope->has_value()) {
      const bool ok =
          doc.format == DocFormat::kPades ? **envelope == "Revision" : **envelope == "Detached";
      if (!ok) {
        return InvalidParameter(
            absl::StrCat(field, ".signed_envelope_property"),
            doc.format == DocFormat::kPades ? "\"Revision\" for PAdES" : "\"Detached\" for CAdES");
      }
    }
    auto sign_algo = d.OptString("signAlgo", 64);
    if (!sign_algo.ok()) return sign_algo.status();
    auto visible = d.Bool("visible_signature", false);  // qsign's own parameter.
    if (!visible.ok()) return visible.status();
    doc.visible = *visible && doc.format == DocFormat::kPades;
    inputs.push_back(std::move(doc));
  }

  // The credential's certificate chain and key.
  const pb::CredentialInfo* info = &*call->credential;
  if (info->certificate_chain_der_size() == 0) {
    return InvalidParameter("credentialID", "the credential has no certificate yet");
  }
  const bool ec = info->key_algorithm() == pb::KEY_ALGORITHM_EC_P256 ||
                  info->key_algorithm() == pb::KEY_ALGORITHM_EC_P384;
  auto prepared =
      SignDoc::Prepare(std::move(inputs),
                       {info->certificate_chain_der().begin(), info->certificate_chain_der().end()},
                       clock_->Now(), description->value_or(""));
  if (!prepared.ok()) return prepared.status();
  SignDoc& signdoc = **prepared;
  for (size_t i = 1; i < signdoc.hashes().size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (signdoc.hashes()[i] == signdoc.hashes()[j]) {
        return InvalidParameter(absl::StrCat("documents[", i, "]"),
                                absl::StrCat("the same document as documents[", j, "]"));
      }
    }
  }

  // One approval for every document.
  pb::AuthorizeRequest auth;
  auth.set_language(*std::move(language));
  auth.set_credential_id(call->credential_id);
  auth.set_hash_algorithm_oid(oid::kSha256);
  for (const std::string& h : signdoc.hashes()) auth.add_hashes(h);
  auth.set_num_signatures(static_cast<uint32_t>(signdoc.hashes().size()));
  for (const pb::DocumentInfo& d : signdoc.descriptions()) *auth.add_documents() = d;
  auth.set_relying_party_name(client->name);
  auth.mutable_client()->set_client_address(request.remote_address);
  auth.mutable_client()->set_user_agent(absl::StrCat("CSC gateway client ", client->client_id));
  const absl::Time asked = absl::Now();
  auto authorized = backend_->Authorize(auth);
  if (!authorized.ok()) return FromService("consent", authorized.status());
  std::string sad;
  const absl::Time give_up = absl::Now() + config_.signdoc_wait;
  while (sad.empty()) {
    const absl::Duration left = give_up - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::PermissionDeniedError(
          "The user did not approve in time (signDoc waits for the consent app's decision)");
    }
    pb::AwaitAuthorizationRequest await;
    await.set_request_id(authorized->request_id());
    const timespec wait = absl::ToTimespec(std::min(left, absl::Seconds(25)));
    await.mutable_max_wait()->set_seconds(wait.tv_sec);
    await.mutable_max_wait()->set_nanos(static_cast<int32_t>(wait.tv_nsec));
    auto outcome = backend_->AwaitAuthorization(await);
    if (!outcome.ok()) return FromService("consent", outcome.status());
    switch (outcome->state()) {
      case pb::CONSENT_REQUEST_STATE_PENDING:
        continue;
      case pb::CONSENT_REQUEST_STATE_APPROVED:
        sad = outcome->sad();
        if (sad.empty()) return absl::FailedPreconditionError("The SAD expired before use");
        break;
      case pb::CONSENT_REQUEST_STATE_DENIED:
        return absl::PermissionDeniedError(
            "The user refused the signature in the consent app (or the PIN got blocked)");
      default:
        return absl::PermissionDeniedError("The authorization expired or was cancelled");
    }
  }
  const absl::Duration approval = absl::Now() - asked;

  pb::SignHashRequest sign;
  sign.set_credential_id(call->credential_id);
  sign.set_hash_algorithm_oid(oid::kSha256);
  sign.set_sign_algorithm_oid(ec ? oid::kEcdsaWithSha256 : oid::kSha256WithRsa);
  for (const std::string& h : signdoc.hashes()) sign.add_hashes(h);
  sign.set_sad(sad);
  const absl::Time signing = absl::Now();
  auto signed_hashes = backend_->SignHash(sign);
  if (!signed_hashes.ok()) return FromSignHash(signed_hashes.status());
  const absl::Duration signer = absl::Now() - signing;

  auto done =
      signdoc.Finish({signed_hashes->signatures().begin(), signed_hashes->signatures().end()},
                     signdoc::HttpTimestamp(config_.tsa_url), signdoc::HttpFetcher());
  if (!done.ok()) {
    // The user approved and the signer signed: what failed now is the TSA, an OCSP/CRL
    // responder or the server, never the caller's request.
    if (done.status().code() == absl::StatusCode::kUnavailable) {
      return absl::UnavailableError(
          absl::StrCat("the timestamp authority or an OCSP responder is unavailable: ",
                       done.status().message()));
    }
    return CscStatus(
        absl::StatusCode::kUnavailable, "server_error",
        absl::StrCat("signDoc could not finish the signatures: ", done.status().message()), 502);
  }

  Json with_signature = Json::array();
  Json objects = Json::array();
  Json validation = {
      {"certificates", Json::array()}, {"ocsp", Json::array()}, {"crl", Json::array()}};
  for (const SignedDocument& d : *done) {
    if (d.format == DocFormat::kPades) {
      with_signature.push_back(EncodeBase64(d.signed_document));
    } else {
      objects.push_back(EncodeBase64(d.signature));
    }
    const cades::ValidationData& v = d.validation_data;
    for (const auto& c : v.certificates_der) validation["certificates"].push_back(EncodeBase64(c));
    for (const auto& o : v.ocsp_responses_der) validation["ocsp"].push_back(EncodeBase64(o));
    for (const auto& c : v.crls_der) validation["crl"].push_back(EncodeBase64(c));
  }
  Json body = Json::object();
  if (!with_signature.empty()) body["DocumentWithSignature"] = std::move(with_signature);
  if (!objects.empty()) body["SignatureObject"] = std::move(objects);
  if (*return_validation) body["validationInfo"] = std::move(validation);
  const SignDocTimings& t = signdoc.timings();
  const absl::Duration total = absl::Now() - started;
  // Where the time went, for clients and the bench (W3C Server-Timing).
  return Result{
      .body = std::move(body),
      .headers = {
          {"Server-Timing",
           absl::StrCat("prepare;dur=", Millis(t.prepare), ", approval;dur=", Millis(approval),
                        ", signer;dur=", Millis(signer), ", tsa;dur=", Millis(t.tsa),
                        ", validation;dur=", Millis(t.validation),
                        ", finish;dur=", Millis(t.finish), ", total;dur=", Millis(total))}}};
}

}  // namespace qsign::gateway
