#include "tools/cli/remote_sign.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/oids.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tools/cli/portal.h"

namespace qsign::cli {

namespace pb = ::qsign::v1;

absl::Status RemoteSignature::Fail(Failure failure) {
  failure_ = std::move(failure);
  return absl::AbortedError("");
}

absl::StatusOr<std::vector<std::string>> RemoteSignature::Sign(
    const std::vector<std::string>& hashes, const std::vector<pb::DocumentInfo>& documents) {
  pb::AuthorizeRequest auth;
  auth.set_credential_id(cert_.certificate_id());
  auth.set_hash_algorithm_oid(oid::kSha256);
  for (const std::string& h : hashes) auth.add_hashes(h);
  auth.set_num_signatures(static_cast<uint32_t>(hashes.size()));
  for (const pb::DocumentInfo& d : documents) *auth.add_documents() = d;
  pb::AuthorizeResponse authorized;
  if (Result f = ctx_.Unary("sign: Consent.Authorize", &pb::Consent::Stub::Authorize, auth,
                            &authorized, bearer_)) {
    return Fail(*std::move(f));
  }
  const std::string what = documents.size() == 1 ? documents[0].document_name()
                                                 : absl::StrCat(documents.size(), " documents");
  ctx_.out.Line(absl::StrCat("approve signing ", what, " in your consent app..."));
  std::string sad;
  const absl::Time give_up = absl::Now() + absl::Seconds(timeout_);
  while (sad.empty()) {
    if (absl::Now() > give_up) {
      return Fail({kRefused, "sign: not approved in time; is the consent app watching?"});
    }
    pb::AwaitAuthorizationRequest await;
    await.set_request_id(authorized.request_id());
    await.mutable_max_wait()->set_seconds(20);
    pb::AwaitAuthorizationResponse resp;
    if (Result f =
            ctx_.Unary("sign: Consent.AwaitAuthorization", &pb::Consent::Stub::AwaitAuthorization,
                       await, &resp, bearer_, absl::Seconds(40))) {
      return Fail(*std::move(f));
    }
    if (resp.state() == pb::CONSENT_REQUEST_STATE_APPROVED) {
      sad = resp.sad();
    } else if (resp.state() != pb::CONSENT_REQUEST_STATE_PENDING) {
      return Fail({kRefused, absl::StrCat("sign: the request was not approved (",
                                          pb::ConsentRequestState_Name(resp.state()),
                                          "); run qsign sign again")});
    }
  }
  pb::SignHashRequest sign;
  sign.set_credential_id(cert_.certificate_id());
  sign.set_hash_algorithm_oid(oid::kSha256);
  const bool ec = cert_.key_algorithm() == pb::KEY_ALGORITHM_EC_P256 ||
                  cert_.key_algorithm() == pb::KEY_ALGORITHM_EC_P384;
  sign.set_sign_algorithm_oid(ec ? oid::kEcdsaWithSha256 : oid::kSha256WithRsa);
  for (const std::string& h : hashes) sign.add_hashes(h);
  sign.set_sad(sad);
  pb::SignHashResponse signed_resp;
  if (Result f = ctx_.Unary("sign: Signer.SignHash", &pb::Signer::Stub::SignHash, sign,
                            &signed_resp, bearer_)) {
    return Fail(*std::move(f));
  }
  if (signed_resp.signatures_size() != static_cast<int>(hashes.size())) {
    return absl::InternalError("Signer.SignHash answered another number of signatures");
  }
  return std::vector<std::string>(signed_resp.signatures().begin(), signed_resp.signatures().end());
}

Result ActiveCertificate(Context& ctx, const std::string& bearer, pb::Certificate* cert) {
  absl::StatusOr<pb::GetStatusResponse> status = CurrentStatus(ctx, bearer);
  if (!status.ok()) return ctx.FromStatus("sign", status.status());
  if (status->state() != pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
    return Failure{kRefused, "sign: no active certificate; run qsign cert issue first"};
  }
  if (status->certificate().issuer_chain_der().empty()) {
    return Failure{kRefused, "sign: the certificate came without its issuers"};
  }
  *cert = status->certificate();
  return std::nullopt;
}

pb::DocumentInfo DescribeDocument(const std::string& file_name, const std::string& file_sha256,
                                  int page_count) {
  pb::DocumentInfo doc;
  doc.set_label(file_name.substr(0, 64));
  doc.set_document_name(file_name.substr(0, 255));
  doc.set_document_digest(file_sha256);
  if (page_count > 0) doc.set_page_count(static_cast<uint32_t>(page_count));
  return doc;
}

}  // namespace qsign::cli
