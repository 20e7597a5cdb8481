#include "tools/cli/verify_pdf.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cades/signed_data.h"
#include "common/cades/verify.h"
#include "common/file.h"
#include "common/pades/pdf_signature.h"
#include "tools/cli/verify.h"

namespace qsign::cli {
namespace {

using Json = nlohmann::ordered_json;

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

Json CertificateJson(const cades::CertificateReport& c) {
  Json j = Json::object();
  j["subject"] = c.subject;
  j["serial"] = c.serial_hex;
  j["not_before"] = TimeText(c.not_before);
  j["not_after"] = TimeText(c.not_after);
  j["status"] = c.status;
  if (!c.status_source.empty()) j["status_source"] = c.status_source;
  if (c.revoked_at) j["revoked_at"] = TimeText(*c.revoked_at);
  return j;
}

}  // namespace

Result VerifyPdf(Context& ctx, const std::string& file,
                 const std::vector<std::string>& trust_anchors_der, absl::Time now) {
  absl::StatusOr<std::string> pdf = ReadFileToString(file);
  if (!pdf.ok()) return Failure{kUsage, std::string(pdf.status().message())};
  absl::StatusOr<pades::PdfFacts> facts = pades::ReadPdf(*pdf);
  if (!facts.ok())
    return Failure{kUsage, absl::StrCat("verify: ", file, ": ", facts.status().message())};

  cades::VerifyOptions options{.trust_anchors_der = trust_anchors_der, .now = now};
  options.extra = facts->dss;
  const bool has_dss_revocation =
      !facts->dss.ocsp_responses_der.empty() || !facts->dss.crls_der.empty();

  Json report = Json::object();
  report["file"] = file;
  report["pages"] = facts->page_count;
  report["sha256"] = absl::BytesToHexString(cades::Sha256(*pdf));
  Json sigs = Json::array();
  bool all_valid = !facts->signatures.empty();
  bool changed_after = false;
  std::vector<std::string> lines;
  int n = 0;
  for (const pades::FoundSignature& s : facts->signatures) {
    ++n;
    Json j = Json::object();
    j["field"] = s.field_name;
    j["sub_filter"] = s.sub_filter;
    j["byte_range"] =
        Json::array({s.byte_range[0], s.byte_range[1], s.byte_range[2], s.byte_range[3]});
    const bool whole = s.byte_range[2] + s.byte_range[3] == static_cast<int64_t>(pdf->size());
    j["covers_whole_file"] = whole;
    std::vector<std::string> problems;
    if (!s.byte_range_ok) problems.push_back(s.byte_range_problem);
    if (s.unsigned_trailing_bytes > 0) {
      changed_after = true;
      problems.push_back(absl::StrCat("document changed after signing (", s.unsigned_trailing_bytes,
                                      " bytes of later changes are not signed)"));
    }
    std::string indication = "TOTAL-FAILED";
    std::string level;
    absl::StatusOr<cades::Report> r =
        s.cms_der.empty() ? absl::InvalidArgumentError("no CMS in /Contents")
                          : cades::VerifyDetached(s.cms_der, s.signed_sha256, options);
    if (!r.ok()) {
      problems.push_back(std::string(r.status().message()));
    } else {
      indication = std::string(cades::IndicationName(r->indication));
      level = r->level;
      if (level == "B-T" && has_dss_revocation) level = "B-LT";
      if (!r->sub_indication.empty()) j["sub_indication"] = r->sub_indication;
      j["signature_valid"] = r->signature_valid;
      if (!r->signature_valid) {
        problems.push_back(
            "document changed after signing (the signed bytes' hash does not match)");
        changed_after = true;
      }
      j["signer"] = r->signer;
      if (r->timestamp_time) j["signed_at"] = TimeText(*r->timestamp_time);
      if (s.claimed_time) j["claimed_time"] = TimeText(*s.claimed_time);
      j["timestamp_valid"] = r->timestamp_valid;
      if (!r->tsa.empty()) j["tsa"] = r->tsa;
      j["validation_time"] = TimeText(r->validation_time);
      j["chain_valid"] = r->chain_valid;
      Json chain = Json::array();
      for (const auto& c : r->chain) chain.push_back(CertificateJson(c));
      j["chain"] = chain;
      if (!r->chain.empty()) j["certificate_status"] = r->chain.front().status;
      for (const std::string& p : r->problems) problems.push_back(p);
    }
    const bool valid =
        indication == "TOTAL-PASSED" && s.byte_range_ok && s.unsigned_trailing_bytes == 0;
    all_valid = all_valid && valid;
    j["valid"] = valid;
    j["indication"] = indication;
    j["level"] = level.empty() ? Json(nullptr) : Json(absl::StrCat("PAdES-", level));
    j["problems"] = problems;
    sigs.push_back(j);

    lines.push_back(absl::StrCat("signature ", n, " (", s.field_name,
                                 "): ", valid ? "VALID" : "NOT VALID", " (", indication, ")",
                                 level.empty() ? "" : absl::StrCat(", PAdES ", level)));
    if (j.contains("signer"))
      lines.push_back(absl::StrCat("  signer: ", j["signer"].get<std::string>()));
    if (j.contains("signed_at")) {
      lines.push_back(absl::StrCat(
          "  signed at: ", j["signed_at"].get<std::string>(), " (signature timestamp",
          j.contains("tsa") ? absl::StrCat(" by ", j["tsa"].get<std::string>()) : "", ")"));
    } else if (s.claimed_time) {
      lines.push_back(
          absl::StrCat("  signed at: ", TimeText(*s.claimed_time), " (claimed; no timestamp)"));
    }
    if (r.ok() && !r->chain.empty()) {
      const auto& c = r->chain.front();
      lines.push_back(
          absl::StrCat("  certificate: ", c.status,
                       c.status_source.empty() ? "" : absl::StrCat(" (", c.status_source, ")"),
                       " at ", TimeText(r->validation_time)));
      std::vector<std::string> names;
      for (const auto& link : r->chain) names.push_back(link.subject);
      lines.push_back(
          absl::StrCat("  chain: ", absl::StrJoin(names, " <- "),
                       r->chain_valid ? " (to a trust anchor)" : " (NOT to a trust anchor)"));
    }
    lines.push_back(absl::StrCat(
        "  covers: ",
        whole ? "the whole file" : "the file up to its revision (later: signatures or DSS)"));
    for (const std::string& p : problems) lines.push_back(absl::StrCat("  problem: ", p));
  }
  report["signatures"] = sigs;
  report["document_changed_after_signing"] = changed_after;
  report["dss"] = {{"certificates", facts->dss.certificates_der.size()},
                   {"ocsp_responses", facts->dss.ocsp_responses_der.size()},
                   {"crls", facts->dss.crls_der.size()}};
  report["valid"] = all_valid;

  if (ctx.out.json()) {
    std::cout << report.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
  } else {
    std::cout << file << ": " << facts->page_count << " page(s), " << facts->signatures.size()
              << " signature(s)" << (all_valid ? ", all valid" : "") << "\n";
    for (const std::string& l : lines) std::cout << l << "\n";
    if (changed_after) std::cout << "document changed after signing\n";
    if (facts->signatures.empty()) std::cout << "no signature\n";
  }
  if (!all_valid) {
    return Failure{kNotValid, changed_after
                                  ? "verify: NOT valid: the document changed after signing"
                                  : "verify: NOT valid"};
  }
  return std::nullopt;
}

}  // namespace qsign::cli
