// Signing a file from the portal: upload, approval on the consent app, download. A PDF gets a
// PAdES B-B signature inside it (common/pades: a signature field over the /ByteRange, the CMS
// without signingTime); any other file a detached CAdES B-B (.p7s, CMS SignedData with
// signingTime and signingCertificateV2, common/cades). Either way the SHA-256 of the CMS signed
// attributes is what Consent.Authorize binds the SAD to and what the signer signs with the
// user's HSM key (Signer.SignHash, with the user's own session token): the web holds no key and
// no power. The file stays in this process (the session's job); the app shows its name, page
// count and SHA-256.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/oids.h"
#include "common/pades/pdf_signature.h"
#include "common/strings.h"
#include "services/web/web_internal.h"

namespace qsign::web {

// The format's state between the hash and the signature value.
struct PendingSignature {
  std::unique_ptr<cades::PreparedSignature> cms;
  std::optional<pades::PreparedPdf> pdf;  // PAdES: the PDF with its placeholder.
};

namespace {

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

// The job of this session named by ?job=; nullptr when there is none.
SignJob* JobOf(Session& s, std::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.jobs.find(std::string(id));
  return it == s.jobs.end() ? nullptr : &it->second;
}

}  // namespace

void Web::SignPage(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  Html(c, T(l, "sign.title"),
       Cat("<p>", Esc(T(l, "sign.intro")), "</p>",
           Form(f, "/sign",
                Cat("<label>", Esc(T(l, "sign.file")),
                    "<input type=\"file\" name=\"file\" id=\"file\" required></label>",
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
  job.content_sha256 = Sha256(file->content);
  job.credential_id = cert.certificate_id();
  job.ec = cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P256 ||
           cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P384;
  auto pending = std::make_shared<PendingSignature>();
  cades::SignerInput input{
      .signer_cert_der = cert.certificate_der(),
      .chain_der = {cert.issuer_chain_der().begin(), cert.issuer_chain_der().end()}};
  int pages = 0;
  if (IsPdf(job.file_name, file->content)) {
    // PAdES B-B: the signing time is the PDF's /M, not a CMS attribute.
    auto count = pades::PageCount(file->content);
    auto pdf = pades::PrepareSignature(file->content, {.signing_time = clock_->Now()});
    if (!count.ok() || !pdf.ok()) {
      Done(c, absl::InvalidArgumentError(T(c.lang, "sign.bad_pdf")), "", "/sign");
      return;
    }
    pages = *count;
    input.content_sha256 = pdf->sha256;
    pending->pdf = *std::move(pdf);
    job.result_name = job.file_name;
    job.result_type = "application/pdf";
  } else {
    input.content_sha256 = job.content_sha256;
    input.signing_time = clock_->Now();
    job.result_name = Cat(job.file_name, ".p7s");
    job.result_type = "application/pkcs7-signature";
  }
  auto prepared = cades::PreparedSignature::New(input);
  if (!prepared.ok()) {
    Done(c, absl::InternalError("cades"), "", "/sign");
    return;
  }
  job.to_be_signed = (*prepared)->to_be_signed();
  pending->cms = *std::move(prepared);
  job.pending = std::move(pending);

  pb::AuthorizeRequest auth;
  auth.set_credential_id(job.credential_id);
  auth.set_hash_algorithm_oid(oid::kSha256);
  auth.add_hashes(job.to_be_signed);
  auth.set_num_signatures(1);
  pb::DocumentInfo* doc = auth.add_documents();
  doc->set_label(job.file_name.substr(0, 64));
  doc->set_document_name(job.file_name);
  doc->set_document_digest(job.content_sha256);
  doc->set_page_count(pages);
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
  {
    absl::MutexLock lock(&c.session->mu);
    if (c.session->jobs.size() >= 8) c.session->jobs.erase(c.session->jobs.begin());
    c.session->jobs.emplace(id, std::move(job));
  }
  Redirect(c, Cat("/sign/wait?job=", id));
}

void Web::SignWait(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  const std::string id(c.req.Param("job"));
  std::string name, digest;
  {
    absl::MutexLock lock(&c.session->mu);
    SignJob* job = JobOf(*c.session, id);
    if (job == nullptr) {
      Redirect(c, "/sign");
      return;
    }
    name = job->file_name;
    digest = absl::BytesToHexString(Av(job->content_sha256));
  }
  const Lang l = c.lang;
  Html(c, T(l, "sign.wait.title"),
       Cat("<dl><dt>", Esc(T(l, "sign.file")), "</dt><dd id=\"file-name\">", Esc(name),
           "</dd><dt>SHA-256</dt><dd class=\"mono\" id=\"file-sha256\">", digest,
           "</dd></dl><p id=\"sign-status\" data-poll=\"/sign/poll?job=", id, "\">",
           Esc(T(l, "sign.waiting")), "</p><p><a id=\"download\" hidden>",
           Esc(T(l, "sign.download")), "</a></p>"),
       "portal.js", {"sign.done", "sign.denied", "sign.expired", "sign.failed", "err.unavailable"});
}

void Web::SignPoll(Call& c) {
  std::string bearer;
  {
    absl::MutexLock lock(&c.session->mu);
    bearer = std::string(c.session->bearer.value());
  }
  const std::string id(c.req.Param("job"));
  std::string request_id, credential_id, to_be_signed;
  bool ec = true;
  {
    absl::MutexLock lock(&c.session->mu);
    SignJob* job = JobOf(*c.session, id);
    if (job == nullptr || bearer.empty()) {
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
    request_id = job->request_id;
    credential_id = job->credential_id;
    to_be_signed = job->to_be_signed;
    ec = job->ec;
  }
  pb::AwaitAuthorizationRequest await;
  await.set_request_id(request_id);
  await.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(options_.poll_wait));
  auto outcome = backend_->AwaitAuthorization({bearer, c.address}, await);
  if (!outcome.ok()) {
    Json(c, 200, R"({"state":"error"})");
    return;
  }
  auto finish = [&](std::string state, std::string result = "") {
    absl::MutexLock lock(&c.session->mu);
    if (SignJob* job = JobOf(*c.session, id)) {
      job->state = state;
      job->result = std::move(result);
      job->pending.reset();
    }
  };
  switch (outcome->state()) {
    case pb::CONSENT_REQUEST_STATE_PENDING:
      Json(c, 200, R"({"state":"pending"})");
      return;
    case pb::CONSENT_REQUEST_STATE_APPROVED:
      break;
    case pb::CONSENT_REQUEST_STATE_DENIED:
      finish("denied");
      Json(c, 200, R"({"state":"denied"})");
      return;
    default:
      finish("expired");
      Json(c, 200, R"({"state":"expired"})");
      return;
  }
  pb::SignHashRequest sign;
  sign.set_credential_id(credential_id);
  sign.set_hash_algorithm_oid(oid::kSha256);
  sign.set_sign_algorithm_oid(ec ? oid::kEcdsaWithSha256 : oid::kSha256WithRsa);
  sign.add_hashes(to_be_signed);
  sign.set_sad(outcome->sad());
  auto signed_hash = backend_->SignHash({bearer, c.address}, sign);
  std::shared_ptr<PendingSignature> pending;
  {
    absl::MutexLock lock(&c.session->mu);
    if (SignJob* job = JobOf(*c.session, id)) pending = job->pending;
  }
  if (!signed_hash.ok() || signed_hash->signatures_size() != 1 || pending == nullptr) {
    finish("failed");
    Json(c, 200, R"({"state":"failed"})");
    return;
  }
  absl::StatusOr<std::string> signed_file = pending->cms->Finish(signed_hash->signatures(0));
  if (signed_file.ok() && pending->pdf.has_value()) {
    signed_file = pades::EmbedSignature(*pending->pdf, *signed_file);
  }
  if (!signed_file.ok()) {
    finish("failed");
    Json(c, 200, R"({"state":"failed"})");
    return;
  }
  finish("done", *std::move(signed_file));
  Json(c, 200, Cat(R"({"state":"done","download":"/sign/download?job=)", id, "\"}"));
}

void Web::SignDownload(Call& c) {
  std::string bearer;
  if (!Bearer(c, &bearer)) return;
  absl::MutexLock lock(&c.session->mu);
  SignJob* job = JobOf(*c.session, c.req.Param("job"));
  if (job == nullptr || job->state != "done") {
    c.res.status = 404;
    c.res.SetContent("not found\n", "text/plain; charset=utf-8");
    return;
  }
  c.res.status = 200;
  c.res.SetHeader("Content-Disposition", ContentDisposition(job->result_name));
  c.res.SetContent(job->result, job->result_type);
}

}  // namespace qsign::web
