#include "tools/cli/sign.h"

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
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
#include "tools/cli/remote_sign.h"
#include "tools/cli/sign_pdf.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

bool IsSelfSigned(const std::string& der) {
  OsslPtr<X509> cert = ParseCertificate(der);
  return cert &&
         X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0;
}

}  // namespace

void SignCommand::Add(CLI::App* qsign, Command* selected) {
  CLI::App* sign = AddCommand(qsign, "sign",
                              "sign FILE: PAdES into a PDF, or a detached CAdES .p7s; approved in "
                              "the app");
  sign->add_option("file", files_, "the file to sign");
  AddOption(sign, "format", &format_, "pades (a PDF) or cades (any file); default by extension");
  AddOption(sign, "level", &level_, "B-B, B-T (timestamped) or B-LT (+ validation data)");
  sign->add_flag("--visible", visible_, "PAdES: show the signer's name on page 1");
  AddOption(sign, "tsa_url", &tsa_url_, "RFC 3161 timestamp authority (HTTP), for B-T and B-LT")
      ->envname("QSIGN_TSA_URL");
  AddOption(sign, "out", &out_, "the output (default: FILE.p7s; for PDFs FILE-signed.pdf)");
  AddOption(sign, "timeout", &timeout_, "seconds to wait for the approval");
  sign->callback([this, selected] { *selected = [this](Context& ctx) { return Sign(ctx); }; });
}

Result SignCommand::Sign(Context& ctx) const {
  if (files_.size() != 1) return Usage("sign: name one FILE");
  const std::string& file = files_[0];
  int timeout = 0;
  if (!ParseSeconds(timeout_, 1, &timeout)) return Usage("--timeout: seconds, a positive number");
  const std::string format =
      !format_.empty() ? format_ : (absl::EndsWithIgnoreCase(file, ".pdf") ? "pades" : "cades");
  if (format == "pades") {
    return SignPdf(ctx, file,
                   {.level = level_,
                    .visible = visible_,
                    .out = out_,
                    .tsa_url = tsa_url_,
                    .timeout_seconds = timeout});
  }
  if (format != "cades") return Usage("--format: pades or cades");
  if (visible_) return Usage("--visible: PAdES only");
  if (level_ != "B-B" && level_ != "B-T" && level_ != "B-LT") {
    return Usage("--level: B-B, B-T or B-LT");
  }
  const std::string out_path = out_.empty() ? file + ".p7s" : out_;
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  absl::StatusOr<std::string> content = ReadFileToString(file);
  if (!content.ok()) return Failure{kUsage, std::string(content.status().message())};
  const std::string digest = cades::Sha256(*content);

  pb::Certificate cert;
  if (Result f = ActiveCertificate(ctx, bearer, &cert)) return f;
  const std::vector<std::string> chain(cert.issuer_chain_der().begin(),
                                       cert.issuer_chain_der().end());
  const std::string base_name = file.substr(file.find_last_of('/') + 1);

  RemoteSignature remote(ctx, bearer, cert, timeout);
  const pb::DocumentInfo shown = DescribeDocument(base_name, digest, 0);
  absl::StatusOr<std::string> p7s =
      cades::Sign({.content_sha256 = digest,
                   .signer_cert_der = cert.certificate_der(),
                   .chain_der = chain,
                   .signing_time = absl::Now()},
                  [&](const std::string& to_sign) -> absl::StatusOr<std::string> {
                    auto signatures = remote.Sign({to_sign}, {shown});
                    if (!signatures.ok()) return signatures.status();
                    return (*signatures)[0];
                  });
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
