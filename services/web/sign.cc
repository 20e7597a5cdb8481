// Signing a file from the portal: upload, approval on the consent app, download. A PDF gets a
// PAdES signature inside it, any other file a detached CAdES (.p7s), at the level the user
// chose: B-T (the default: a timestamp from web.tsa_url over the signature), B-LT (also the
// certificates and OCSP answers a verifier needs later) or B-B. common/signdoc builds them, as
// for the gateway's signDoc. The SHA-256 of the CMS signed attributes is what Consent.Authorize
// binds the SAD to and what the signer signs with the user's HSM key (Signer.SignHash, with the
// user's own session token): the web holds no key and no power. The file stays in the session's
// job; the app shows its name, page count and SHA-256.
#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/oids.h"
#include "common/signdoc/signdoc.h"
#include "common/strings.h"
#include "services/web/web_internal.h"

namespace qsign::web {

namespace {

constexpr std::string_view kLevels[] = {"B-T", "B-LT", "B-B"};

signdoc::DocLevel DocLevelOf(std::string_view level) {
  if (level == "B-B") return signdoc::DocLevel::kBB;
  return level == "B-LT" ? signdoc::DocLevel::kBLT : signdoc::DocLevel::kBT;
}

// The job's signature prepared again from the same PDF placeholder, chain and time: the same
// hash as at the upload (the caller checks).
absl::StatusOr<std::unique_ptr<signdoc::SignDoc>> Prepare(const SignJob& job) {
  std::vector<signdoc::DocumentToSign> documents;
  documents.push_back({.content = job.content,
                       .format = job.pdf ? signdoc::DocFormat::kPades : signdoc::DocFormat::kCades,
                       .level = DocLevelOf(job.level)});
  if (!job.prepared_pdf.empty()) {
    documents[0].prepared_pdf = pades::PreparedPdf{.pdf = job.prepared_pdf,
                                                   .byte_range = job.byte_range,
                                                   .sha256 = job.pdf_sha256,
                                                   .field_name = job.field_name};
  }
  return signdoc::SignDoc::Prepare(std::move(documents), job.chain_der, job.signing_time,
                                   job.file_name.substr(0, 64));
}

bool IsPdf(std::string_view name, std::string_view content) {
  return absl::StartsWith(Av(content), "%PDF-") && absl::EndsWithIgnoreCase(Av(name), ".pdf");
}

// A file name as the page shows it and as the download is called: no path, no control or quote
// characters, at most 100 bytes.
std::string CleanName(std::string_view name) {
  const size_t slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name = name.substr(slash + 1);
  std::string out;
  for (unsigned char c : name.substr(0, 100)) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') continue;
    out += static_cast<char>(c);
  }
  return out.empty() ? "document" : out;
}

// RFC 6266: an ASCII fallback name and the UTF-8 name (RFC 8187), e.g. for Cyrillic names.
std::string ContentDisposition(std::string_view name) {
  std::string ascii, encoded;
  for (unsigned char c : name) {
    ascii += c < 0x80 ? static_cast<char>(c) : '_';
    if (absl::ascii_isalnum(c) || c == '.' || c == '-' || c == '_') {
      encoded += static_cast<char>(c);
    } else {
      encoded += Cat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return Cat("attachment; filename=\"", ascii, "\"; filename*=UTF-8''", encoded);
}

}  // namespace

void Web::SignPage(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  // The level: B-T by default; without a timestamp authority (web.tsa_url) B-B only.
  const bool tsa = !options_.tsa_url.empty();
  std::string levels =
      Cat("<fieldset id=\"levels\"><legend>", Esc(T(l, "sign.level")), "</legend>");
  for (std::string_view level : kLevels) {
    const bool enabled = tsa || level == "B-B";
    const bool checked = level == (tsa ? "B-T" : "B-B");
    const std::string id = Cat("level-", absl::AsciiStrToLower(Av(level)));
    Append(&levels, "<label><input type=\"radio\" name=\"level\" id=\"", id, "\" value=\"", level,
           "\"", checked ? " checked" : "", enabled ? "" : " disabled", "> ",
           Esc(T(l, Cat("sign.level.", absl::AsciiStrToLower(Av(level))))), "</label>");
  }
  if (!tsa) Append(&levels, "<p id=\"no-tsa\">", Esc(T(l, "sign.no_tsa")), "</p>");
  Append(&levels, "</fieldset>");
  Html(c, T(l, "sign.title"),
       Cat("<p>", Esc(T(l, "sign.intro")), "</p>",
           Form(f, "/sign",
                Cat("<label>", Esc(T(l, "sign.file")),
                    "<input type=\"file\" name=\"file\" id=\"file\" required></label>", levels,
                    Button(l, "upload", "sign.submit")),
                "enctype=\"multipart/form-data\"")));
}

void Web::SignUpload(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const http::Request::FilePart* file = c.req.File("file");
  if (file == nullptr || file->content.empty()) {
    Done(c, absl::InvalidArgumentError(T(c.lang, "sign.no_file")), "", "/sign");
    return;
  }
  if (file->content.size() > options_.max_upload_bytes) {
    Done(c, absl::InvalidArgumentError(T(c.lang, "sign.too_large")), "", "/sign");
    return;
  }
  // An old form without the choice signs at the default.
  std::string level(FormField(c.req, "level"));
  if (level.empty()) level = options_.tsa_url.empty() ? "B-B" : "B-T";
  if (std::find(std::begin(kLevels), std::end(kLevels), level) == std::end(kLevels)) {
    Done(c, absl::InvalidArgumentError(T(c.lang, "sign.bad_level")), "", "/sign");
    return;
  }
  if (level != "B-B" && options_.tsa_url.empty()) {
    Done(c, absl::FailedPreconditionError(T(c.lang, "sign.no_tsa")), "", "/sign");
    return;
  }
  auto status = backend_->GetStatus({bearer, c.address}, pb::GetStatusRequest());
  if (!status.ok()) {
    if (status.status().code() == absl::StatusCode::kUnauthenticated) return SessionEnded(c);
    Done(c, status.status(), "", "/sign");
    return;
  }
  if (status->state() != pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
    Done(c, absl::FailedPreconditionError(T(c.lang, "sign.no_certificate")), "", "/account");
    return;
  }
  const pb::Certificate& cert = status->certificate();
  SignJob job;
  job.file_name = CleanName(file->filename);
  job.content = file->content;
  job.content_sha256 = Sha256(file->content);
  job.pdf = IsPdf(job.file_name, file->content);
  job.level = level;
  job.chain_der.push_back(cert.certificate_der());
  job.chain_der.insert(job.chain_der.end(), cert.issuer_chain_der().begin(),
                       cert.issuer_chain_der().end());
  // PAdES: the signing time is the PDF's /M, not a CMS attribute.
  job.signing_time = clock_->Now();
  job.credential_id = cert.certificate_id();
  job.ec = cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P256 ||
           cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P384;
  auto prepared = Prepare(job);
  if (!prepared.ok()) {
    Done(c,
         job.pdf ? absl::InvalidArgumentError(T(c.lang, "sign.bad_pdf"))
                 : absl::InternalError("signdoc"),
         "", "/sign");
    return;
  }
  job.to_be_signed = (*prepared)->hashes()[0];
  if (const auto& pdf = (*prepared)->prepared_pdf(0); pdf.has_value()) {
    job.prepared_pdf = pdf->pdf;
    job.byte_range = pdf->byte_range;
    job.pdf_sha256 = pdf->sha256;
    job.field_name = pdf->field_name;
  }
  if (job.pdf) {
    job.result_name = job.file_name;
    job.result_type = "application/pdf";
  } else {
    job.result_name = Cat(job.file_name, ".p7s");
    job.result_type = "application/pkcs7-signature";
  }

  pb::AuthorizeRequest auth;
  auth.set_credential_id(job.credential_id);
  auth.set_hash_algorithm_oid(oid::kSha256);
  auth.add_hashes(job.to_be_signed);
  auth.set_num_signatures(1);
  pb::DocumentInfo* doc = auth.add_documents();
  *doc = (*prepared)->descriptions()[0];  // Label, page count (PDF), SHA-256 of the file.
  doc->set_document_name(job.file_name);
  *auth.mutable_client() = ClientOf(c.req, c.address);
  auth.set_language(std::string(LangTag(c.lang)));
  auto authorized = backend_->Authorize({bearer, c.address}, auth);
  if (!authorized.ok()) {
    if (authorized.status().code() == absl::StatusCode::kUnauthenticated) return SessionEnded(c);
    Done(c, authorized.status(), "", "/sign");
    return;
  }
  job.request_id = authorized->request_id();
  const std::string id = SessionStore::RandomToken().substr(0, 22);
  if (absl::Status put = sessions_.PutJob(*c.session, id, job); !put.ok()) {
    Done(c, absl::UnavailableError("sessions"), "", "/sign");
    return;
  }
  Redirect(c, Cat("/sign/wait?job=", id));
}

void Web::SignWait(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const std::string id(c.req.Param("job"));
  absl::StatusOr<SignJob> job = sessions_.GetJob(*c.session, id);
  if (!job.ok()) {
    Redirect(c, "/sign");
    return;
  }
  const std::string& name = job->file_name;
  const std::string digest = absl::BytesToHexString(Av(job->content_sha256));
  const std::string& level = job->level;
  const std::string& state = job->state;
  const Lang l = c.lang;
  const std::string facts =
      Cat("<dl><dt>", Esc(T(l, "sign.file")), "</dt><dd id=\"file-name\">", Esc(name),
          "</dd><dt>SHA-256</dt><dd class=\"mono\" id=\"file-sha256\">", digest, "</dd><dt>",
          Esc(T(l, "sign.level")), "</dt><dd id=\"file-level\">", level, "</dd></dl>");
  if (state == "tsa_failed" || state == "ocsp_failed") {
    // After the approval the TSA (or an OCSP responder) did not answer: an error page naming
    // it, 503 as the gateway's signDoc answers (the signature itself was made and is dropped).
    Html(c, T(l, "sign.failed.title"),
         Cat(facts, "<p id=\"sign-error\" class=\"error\">", Esc(T(l, Cat("sign.", state))),
             "</p><p><a href=\"/sign\" id=\"sign-again\">", Esc(T(l, "sign.again")), "</a></p>"));
    c.res.status = 503;
    return;
  }
  Html(c, T(l, "sign.wait.title"),
       Cat(facts, "<p id=\"sign-status\" data-poll=\"/sign/poll?job=", id,
           "\" data-page=\"/sign/wait?job=", id, "\">", Esc(T(l, "sign.waiting")),
           "</p><p><a id=\"download\" hidden>", Esc(T(l, "sign.download")), "</a></p>"),
       "portal.js",
       {"sign.done", "sign.denied", "sign.expired", "sign.failed", "sign.tsa_failed",
        "sign.ocsp_failed", "err.unavailable"});
}

void Web::SignPoll(Call& c) {
  std::string bearer;
  {
    absl::MutexLock lock(&c.session->mu);
    bearer = std::string(c.session->bearer.value());
  }
  const std::string id(c.req.Param("job"));
  absl::StatusOr<SignJob> job = sessions_.GetJob(*c.session, id);
  if (!job.ok() || bearer.empty()) {
    Json(c, 200, R"({"state":"expired"})");
    return;
  }
  if (job->state == "done") {
    Json(c, 200, Cat(R"({"state":"done","download":"/sign/download?job=)", id, "\"}"));
    return;
  }
  if (job->state != "pending") {
    Json(c, 200, Cat(R"({"state":")", job->state, "\"}"));
    return;
  }
  const SignJob& copy = *job;
  pb::AwaitAuthorizationRequest await;
  await.set_request_id(copy.request_id);
  await.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(options_.poll_wait));
  auto outcome = backend_->AwaitAuthorization({bearer, c.address}, await);
  if (!outcome.ok()) {
    Json(c, 200, R"({"state":"error"})");
    return;
  }
  auto finish = [&](std::string state, std::string result = "") {
    SignJob ended = *job;
    ended.state = state;
    ended.result = std::move(result);
    ended.content.clear();
    ended.prepared_pdf.clear();
    if (absl::Status st = sessions_.UpdateJob(*c.session, id, ended); !st.ok()) {
      Log(LogLevel::kWarning, "web", "sign: the job could not be saved",
          {{"status", st.ToString()}});
    }
    Json(c, 200,
         state == "done" ? Cat(R"({"state":"done","download":"/sign/download?job=)", id, "\"}")
                         : Cat(R"({"state":")", state, "\"}"));
  };
  switch (outcome->state()) {
    case pb::CONSENT_REQUEST_STATE_PENDING:
      Json(c, 200, R"({"state":"pending"})");
      return;
    case pb::CONSENT_REQUEST_STATE_APPROVED:
      break;
    case pb::CONSENT_REQUEST_STATE_DENIED:
      return finish("denied");
    default:
      return finish("expired");
  }
  auto prepared = Prepare(copy);
  if (!prepared.ok() || (*prepared)->hashes()[0] != copy.to_be_signed) {
    Log(LogLevel::kError, "web", "sign: the signature prepared again differs from the approved",
        {{"status", prepared.status().ToString()}});
    return finish("failed");
  }
  pb::SignHashRequest sign;
  sign.set_credential_id(copy.credential_id);
  sign.set_hash_algorithm_oid(oid::kSha256);
  sign.set_sign_algorithm_oid(copy.ec ? oid::kEcdsaWithSha256 : oid::kSha256WithRsa);
  sign.add_hashes(copy.to_be_signed);
  sign.set_sad(outcome->sad());
  auto signed_hash = backend_->SignHash({bearer, c.address}, sign);
  if (!signed_hash.ok() || signed_hash->signatures_size() != 1) {
    Log(LogLevel::kWarning, "web", "sign: the signer refused",
        {{"status", signed_hash.status().ToString()}});
    return finish("failed");
  }
  signdoc::SignDoc& doc = **prepared;
  auto signed_files = doc.Finish({signed_hash->signatures(0)},
                                 signdoc::HttpTimestamp(options_.tsa_url), signdoc::HttpFetcher());
  if (!signed_files.ok()) {
    // The page names the party; the log has its answer (no secret in it: URLs and statuses).
    Log(LogLevel::kWarning, "web", "sign: finishing the signature failed",
        {{"status", signed_files.status().ToString()}, {"level", copy.level}});
    switch (doc.failed_step()) {
      case signdoc::FinishStep::kTimestamp:
        return finish("tsa_failed");
      case signdoc::FinishStep::kValidationData:
        return finish("ocsp_failed");
      default:
        return finish("failed");
    }
  }
  signdoc::SignedDocument& out = (*signed_files)[0];
  finish("done", copy.pdf ? std::move(out.signed_document) : std::move(out.signature));
}

void Web::SignDownload(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  absl::StatusOr<SignJob> job = sessions_.GetJob(*c.session, c.req.Param("job"));
  if (!job.ok() || job->state != "done") {
    c.res.status = 404;
    c.res.SetContent("not found\n", "text/plain; charset=utf-8");
    return;
  }
  c.res.status = 200;
  c.res.SetHeader("Content-Disposition", ContentDisposition(job->result_name));
  c.res.SetContent(job->result, job->result_type);
}

}  // namespace qsign::web
