#include "tools/cli/sign.h"

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/file.h"
#include "common/http/client.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tools/cli/args.h"
#include "tools/cli/portal.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

// One remote signature of `to_sign` (SHA-256 of the signed attributes): the consent request,
// the wait for the user's approval in the app, and SignHash with the SAD. A failure to show the
// user is kept in *failure.
class RemoteSignature {
 public:
  RemoteSignature(Context& ctx, const std::string& bearer, const pb::Certificate& cert,
                  const std::string& file_name, const std::string& file_sha256, int timeout)
      : ctx_(ctx),
        bearer_(bearer),
        cert_(cert),
        file_name_(file_name),
        file_sha256_(file_sha256),
        timeout_(timeout) {}

  absl::StatusOr<std::string> Sign(const std::string& to_sign) {
    pb::AuthorizeRequest auth;
    auth.set_credential_id(cert_.certificate_id());
    auth.set_hash_algorithm_oid(oid::kSha256);
    auth.add_hashes(to_sign);
    auth.set_num_signatures(1);
    pb::DocumentInfo* doc = auth.add_documents();
    doc->set_label(file_name_.substr(0, 64));
    doc->set_document_name(file_name_);
    doc->set_document_digest(file_sha256_);
    pb::AuthorizeResponse authorized;
    if (Result f = ctx_.Unary("sign: Consent.Authorize", &pb::Consent::Stub::Authorize, auth,
                              &authorized, bearer_)) {
      return Fail(*std::move(f));
    }
    ctx_.out.Line(absl::StrCat("approve signing ", file_name_, " in your consent app..."));
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
    sign.add_hashes(to_sign);
    sign.set_sad(sad);
    pb::SignHashResponse signed_resp;
    if (Result f = ctx_.Unary("sign: Signer.SignHash", &pb::Signer::Stub::SignHash, sign,
                              &signed_resp, bearer_)) {
      return Fail(*std::move(f));
    }
    if (signed_resp.signatures_size() != 1) {
      return absl::InternalError("Signer.SignHash answered no signature");
    }
    return signed_resp.signatures(0);
  }

  const std::optional<Failure>& failure() const { return failure_; }

 private:
  absl::Status Fail(Failure failure) {
    failure_ = std::move(failure);
    return absl::AbortedError("");
  }

  Context& ctx_;
  const std::string& bearer_;
  const pb::Certificate& cert_;
  const std::string& file_name_;
  const std::string& file_sha256_;
  const int timeout_;
  std::optional<Failure> failure_;
};

bool IsSelfSigned(const std::string& der) {
  OsslPtr<X509> cert = ParseCertificate(der);
  return cert &&
         X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0;
}

}  // namespace

void SignCommand::Add(CLI::App* qsign, Command* selected) {
  CLI::App* sign =
      AddCommand(qsign, "sign", "sign FILE: detached CAdES (B-B, B-T, B-LT), approved in the app");
  sign->add_option("file", files_, "the file to sign");
  AddOption(sign, "out", &out_, "the signature file (default: FILE.p7s)");
  AddOption(sign, "format", &format_, "cades (a detached .p7s)");
  AddOption(sign, "level", &level_, "B-B, B-T (signature timestamp) or B-LT (and validation data)");
  AddOption(sign, "tsa_url", &tsa_url_, "the RFC 3161 TSA for B-T and B-LT")
      ->envname("QSIGN_TSA_URL");
  AddOption(sign, "timeout", &timeout_, "seconds to wait for the approval");
  sign->callback([this, selected] { *selected = [this](Context& ctx) { return Sign(ctx); }; });
}

Result SignCommand::Sign(Context& ctx) const {
  if (files_.size() != 1) return Usage("sign: name one FILE");
  const std::string& file = files_[0];
  const std::string out_path = out_.empty() ? file + ".p7s" : out_;
  int timeout = 0;
  if (!ParseSeconds(timeout_, 1, &timeout)) return Usage("--timeout: seconds, a positive number");
  if (format_ != "cades") return Usage("--format: cades");
  if (level_ != "B-B" && level_ != "B-T" && level_ != "B-LT") {
    return Usage("--level: B-B, B-T or B-LT");
  }
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  absl::StatusOr<std::string> content = ReadFileToString(file);
  if (!content.ok()) return Failure{kUsage, std::string(content.status().message())};
  const std::string digest = cades::Sha256(*content);

  absl::StatusOr<pb::GetStatusResponse> status = CurrentStatus(ctx, bearer);
  if (!status.ok()) return ctx.FromStatus("sign", status.status());
  if (status->state() != pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
    return Failure{kRefused, "sign: no active certificate; run qsign cert issue first"};
  }
  const pb::Certificate& cert = status->certificate();
  const std::vector<std::string> chain(cert.issuer_chain_der().begin(),
                                       cert.issuer_chain_der().end());
  const std::string base_name = file.substr(file.find_last_of('/') + 1);

  RemoteSignature remote(ctx, bearer, cert, base_name, digest, timeout);
  absl::StatusOr<std::string> p7s =
      cades::Sign({.content_sha256 = digest,
                   .signer_cert_der = cert.certificate_der(),
                   .chain_der = chain,
                   .signing_time = absl::Now()},
                  [&remote](const std::string& to_sign) { return remote.Sign(to_sign); });
  if (remote.failure()) return remote.failure();
  if (!p7s.ok()) return Failure{kUsage, absl::StrCat("sign: ", p7s.status().ToString())};
  if (level_ != "B-B") {
    // B-T: the TSA stamps the signature value; B-LT: then every certificate and its status.
    p7s = cades::AddSignatureTimestamp(*p7s, [this](const std::string& query) {
      return http::Post(tsa_url_, "application/timestamp-query", query);
    });
    if (!p7s.ok())
      return Failure{kUnreachable, absl::StrCat("sign: timestamp: ", p7s.status().ToString())};
  }
  if (level_ == "B-LT") {
    std::vector<std::string> anchors;
    for (const std::string& der : chain) {
      if (IsSelfSigned(der)) anchors.push_back(der);
    }
    auto data = cades::CollectValidationData(
        *p7s, anchors,
        {.ocsp =
             [](const std::string& url, const std::string& request) {
               return http::Post(url, "application/ocsp-request", request);
             },
         .crl = [](const std::string& url) { return http::Get(url); }});
    if (!data.ok()) {
      return Failure{kUnreachable,
                     absl::StrCat("sign: validation data: ", data.status().ToString())};
    }
    p7s = cades::AddValidationData(*p7s, *data);
    if (!p7s.ok()) return Failure{kUsage, absl::StrCat("sign: ", p7s.status().ToString())};
  }
  if (absl::Status s = WriteFileAtomically(out_path, *p7s, 0644); !s.ok()) {
    return Failure{kUsage, std::string(s.message())};
  }
  ctx.out.Add("file", file);
  ctx.out.Add("signature", out_path);
  ctx.out.Add("sha256", absl::BytesToHexString(digest));
  ctx.out.Add("certificate_id", cert.certificate_id());
  ctx.out.Add("level", level_);
  ctx.out.Print(absl::StrCat("signed; check with: openssl cms -verify -binary -inform DER -in ",
                             out_path, " -content ", file, " -CAfile ", ctx.state.ChainPath(),
                             " -out /dev/null"));
  return std::nullopt;
}

}  // namespace qsign::cli
