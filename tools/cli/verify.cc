#include "tools/cli/verify.h"

#include <openssl/pem.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/verify.h"
#include "common/file.h"
#include "common/ossl.h"
#include "tools/cli/args.h"
#include "tools/cli/verify_pdf.h"

namespace qsign::cli {
namespace {

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

// The self-signed certificates of a PEM file: the trust anchors.
std::vector<std::string> AnchorsIn(const std::string& pem) {
  std::vector<std::string> out;
  OsslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (true) {
    OsslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    if (X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0) {
      out.push_back(ToDer(cert.get(), i2d_X509));
    }
  }
  return out;
}

std::string ChainText(const std::vector<cades::CertificateReport>& chain) {
  std::vector<std::string> parts;
  for (const auto& c : chain) {
    std::string s = absl::StrCat(c.subject, " [", c.status);
    if (c.revoked_at) absl::StrAppend(&s, ", revoked at ", TimeText(*c.revoked_at));
    if (!c.status_source.empty()) absl::StrAppend(&s, "; ", c.status_source);
    parts.push_back(s + "]");
  }
  return absl::StrJoin(parts, " <- ");
}

}  // namespace

void VerifyCommand::Add(CLI::App* qsign, Command* selected) {
  CLI::App* verify = AddCommand(qsign, "verify",
                                "verify FILE.p7s: validation report of a detached CAdES signature");
  verify->add_option("file", files_, "the signature");
  AddOption(verify, "content", &content_, "the signed file (default: FILE without .p7s)");
  AddOption(verify, "ca_file", &ca_file_,
            "PEM with the trust anchor (default: the state dir's chain.pem)");
  AddOption(verify, "at", &at_, "validate as of this time (RFC 3339; default now)");
  verify->callback([this, selected] { *selected = [this](Context& ctx) { return Verify(ctx); }; });
}

Result VerifyCommand::Verify(Context& ctx) const {
  if (files_.size() != 1) return Usage("verify: name one FILE.p7s or FILE.pdf");
  const std::string& p7s_path = files_[0];
  absl::Time now = absl::Now();
  if (!at_.empty()) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, at_, &now, &err)) {
      return Usage("--at: an RFC 3339 time, e.g. 2032-01-01T00:00:00Z");
    }
  }
  const std::string ca_path = ca_file_.empty() ? ctx.state.ChainPath() : ca_file_;
  auto pem = ReadFileToString(ca_path);
  if (!pem.ok()) return Failure{kUsage, std::string(pem.status().message())};
  const std::vector<std::string> anchors = AnchorsIn(*pem);
  if (anchors.empty())
    return Failure{kUsage, absl::StrCat(ca_path, ": no self-signed certificate")};
  if (absl::EndsWithIgnoreCase(p7s_path, ".pdf")) {
    // PAdES: the signatures and the signed bytes are in the PDF (verify_pdf.h).
    if (!content_.empty()) return Usage("--content: not with a PDF (it holds what was signed)");
    return VerifyPdf(ctx, p7s_path, anchors, now);
  }
  std::string content_path = content_;
  if (content_path.empty()) {
    if (p7s_path.size() <= 4 || p7s_path.substr(p7s_path.size() - 4) != ".p7s") {
      return Usage("verify: FILE.p7s or FILE.pdf, or --content=FILE");
    }
    content_path = p7s_path.substr(0, p7s_path.size() - 4);
  }
  auto p7s = ReadFileToString(p7s_path);
  if (!p7s.ok()) return Failure{kUsage, std::string(p7s.status().message())};
  auto content = ReadFileToString(content_path);
  if (!content.ok()) return Failure{kUsage, std::string(content.status().message())};

  auto report = cades::VerifyDetached(*p7s, cades::Sha256(*content),
                                      {.trust_anchors_der = anchors, .now = now});
  if (!report.ok()) return Failure{kUsage, absl::StrCat("verify: ", report.status().message())};
  const cades::Report& r = *report;
  const std::string indication(cades::IndicationName(r.indication));
  ctx.out.Add("file", content_path);
  ctx.out.Add("signature", p7s_path);
  ctx.out.Add("indication", indication);
  if (!r.sub_indication.empty()) ctx.out.Add("sub_indication", r.sub_indication);
  ctx.out.Add("level", r.level);
  ctx.out.Add("signer", r.signer);
  if (r.claimed_signing_time)
    ctx.out.Add("claimed_signing_time", TimeText(*r.claimed_signing_time));
  if (r.timestamp_time) {
    ctx.out.Add("signed_at", TimeText(*r.timestamp_time));
    ctx.out.Add("tsa", r.tsa);
  }
  ctx.out.Add("validated_at", TimeText(r.validation_time));
  ctx.out.Add("certificate_status", r.chain.empty() ? "unknown" : r.chain.front().status);
  ctx.out.Add("chain", ChainText(r.chain));
  if (!r.tsa_chain.empty()) ctx.out.Add("tsa_chain", ChainText(r.tsa_chain));
  ctx.out.Add("signature_valid", r.signature_valid ? "true" : "false");
  ctx.out.Add("chain_valid", r.chain_valid ? "true" : "false");
  if (!r.problems.empty()) ctx.out.Add("problems", absl::StrJoin(r.problems, "; "));
  if (r.indication == cades::Indication::kTotalPassed) {
    ctx.out.Print(absl::StrCat("signature valid (", indication, ", ", r.level, ")"));
    return std::nullopt;
  }
  ctx.out.Print(absl::StrCat("signature NOT valid (", indication, " ", r.sub_indication, ")"));
  return Failure{kNotValid, absl::StrCat("verify: ", indication, " ", r.sub_indication)};
}

}  // namespace qsign::cli
