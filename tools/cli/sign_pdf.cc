#include "tools/cli/sign_pdf.h"

#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/file.h"
#include "common/http/client.h"
#include "common/pades/pdf_signature.h"
#include "tools/cli/portal.h"
#include "tools/cli/remote_sign.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

std::string DefaultOut(const std::string& file) {
  if (absl::EndsWithIgnoreCase(file, ".pdf")) {
    return absl::StrCat(file.substr(0, file.size() - 4), "-signed.pdf");
  }
  return absl::StrCat(file, "-signed.pdf");
}

}  // namespace

Result SignPdf(Context& ctx, const std::string& file, const PadesSignOptions& options) {
  if (options.level != "B-B" && options.level != "B-T" && options.level != "B-LT") {
    return Usage("--level: B-B, B-T or B-LT");
  }
  const bool timestamped = options.level != "B-B";
  if (timestamped && options.tsa_url.empty()) return Usage("--tsa_url: required for B-T and B-LT");
  const std::string out_path = options.out.empty() ? DefaultOut(file) : options.out;
  absl::StatusOr<std::string> pdf = ReadFileToString(file);
  if (!pdf.ok()) return Failure{kUsage, std::string(pdf.status().message())};
  absl::StatusOr<int> pages = pades::PageCount(*pdf);
  if (!pages.ok())
    return Failure{kUsage, absl::StrCat("sign: ", file, ": ", pages.status().message())};
  const std::string file_sha256 = cades::Sha256(*pdf);

  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  pb::Certificate cert;
  if (Result f = ActiveCertificate(ctx, bearer, &cert)) return f;
  const std::vector<std::string> chain(cert.issuer_chain_der().begin(),
                                       cert.issuer_chain_der().end());

  const absl::Time now = absl::Now();
  pades::PrepareOptions prepare{.signing_time = now};
  if (options.visible) {
    prepare.appearance = pades::AppearanceFor(cert.certificate_der(), now);
  }
  absl::StatusOr<pades::PreparedPdf> prepared = pades::PrepareSignature(*pdf, prepare);
  if (!prepared.ok()) {
    return Failure{kUsage, absl::StrCat("sign: ", file, ": ", prepared.status().message())};
  }
  absl::StatusOr<std::unique_ptr<cades::PreparedSignature>> cms_prepared =
      cades::PreparedSignature::New({.content_sha256 = prepared->sha256,
                                     .signer_cert_der = cert.certificate_der(),
                                     .chain_der = chain,
                                     .signing_time = std::nullopt});
  if (!cms_prepared.ok())
    return Failure{kUsage, absl::StrCat("sign: ", cms_prepared.status().ToString())};

  const std::string base_name = file.substr(file.find_last_of('/') + 1);
  RemoteSignature remote(ctx, bearer, cert, options.timeout_seconds);
  absl::StatusOr<std::vector<std::string>> signatures = remote.Sign(
      {(*cms_prepared)->to_be_signed()}, {DescribeDocument(base_name, file_sha256, *pages)});
  if (remote.failure()) return remote.failure();
  if (!signatures.ok())
    return Failure{kUsage, absl::StrCat("sign: ", signatures.status().ToString())};
  absl::StatusOr<std::string> cms = (*cms_prepared)->Finish((*signatures)[0]);
  if (!cms.ok()) return Failure{kUsage, absl::StrCat("sign: ", cms.status().ToString())};

  const auto local_failure = [&](const char* step, const absl::Status& s) {
    return Failure{s.code() == absl::StatusCode::kUnavailable ? kUnreachable : kUsage,
                   absl::StrCat("sign: ", step, ": ", s.message())};
  };
  if (timestamped) {
    // B-T: the TSA stamps the signature value (an unsigned attribute of the CMS).
    absl::StatusOr<std::string> stamped =
        cades::AddSignatureTimestamp(*cms, [&](const std::string& query) {
          return http::Post(options.tsa_url, "application/timestamp-query", query);
        });
    if (!stamped.ok()) return local_failure("timestamp", stamped.status());
    cms = *std::move(stamped);
  }
  absl::StatusOr<std::string> signed_pdf = pades::EmbedSignature(*prepared, *cms);
  if (!signed_pdf.ok()) return local_failure("PDF", signed_pdf.status());
  if (options.level == "B-LT") {
    // B-LT: every certificate and its status at signing, in the DSS (a further update).
    absl::StatusOr<cades::ValidationData> data = cades::CollectValidationData(
        *cms, {chain.back()},
        {.ocsp =
             [](const std::string& url, const std::string& request) {
               return http::Post(url, "application/ocsp-request", request);
             },
         .crl = [](const std::string& url) { return http::Get(url); }});
    if (!data.ok()) return local_failure("validation data", data.status());
    signed_pdf = pades::AddDss(*signed_pdf, *data);
    if (!signed_pdf.ok()) return local_failure("DSS", signed_pdf.status());
  }
  if (absl::Status s = WriteFileAtomically(out_path, *signed_pdf, 0644); !s.ok()) {
    return Failure{kUsage, std::string(s.message())};
  }
  ctx.out.Add("file", file);
  ctx.out.Add("signed_file", out_path);
  ctx.out.Add("format", "PAdES");
  ctx.out.Add("level", options.level);
  ctx.out.Add("pages", absl::StrCat(*pages));
  ctx.out.Add("sha256", absl::BytesToHexString(file_sha256));
  ctx.out.Add("field", prepared->field_name);
  ctx.out.Add("certificate_id", cert.certificate_id());
  ctx.out.Print(absl::StrCat("signed (PAdES ", options.level, "); check with: qsign verify ",
                             out_path, "  or  pdfsig ", out_path));
  return std::nullopt;
}

}  // namespace qsign::cli
