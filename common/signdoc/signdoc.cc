#include "common/signdoc/signdoc.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/http/client.h"
#include "common/pades/pdf_signature.h"

namespace qsign::signdoc {

struct SignDoc::Item {
  DocumentToSign input;
  std::optional<pades::PreparedPdf> pdf;
  std::unique_ptr<cades::PreparedSignature> cms;
};

SignDoc::SignDoc() = default;
SignDoc::~SignDoc() = default;

namespace {

// Measures the time from construction to destruction into *total.
class Stopwatch {
 public:
  explicit Stopwatch(absl::Duration* total) : total_(total), start_(absl::Now()) {}
  ~Stopwatch() { *total_ += absl::Now() - start_; }

 private:
  absl::Duration* total_;
  absl::Time start_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SignDoc>> SignDoc::Prepare(std::vector<DocumentToSign> documents,
                                                          std::vector<std::string> chain_der,
                                                          absl::Time now, std::string description) {
  if (chain_der.empty()) return absl::FailedPreconditionError("the credential has no certificate");
  std::unique_ptr<SignDoc> out(new SignDoc());
  out->chain_der_ = std::move(chain_der);
  Stopwatch watch(&out->timings_.prepare);
  const std::vector<std::string> issuers(out->chain_der_.begin() + 1, out->chain_der_.end());
  for (size_t i = 0; i < documents.size(); ++i) {
    auto item = std::make_unique<Item>();
    item->input = std::move(documents[i]);
    const std::string& content = item->input.content;
    const std::string field = absl::StrCat("documents[", i, "]");
    v1::DocumentInfo info;
    info.set_document_digest(cades::Sha256(content));
    std::string content_sha256;
    if (item->input.format == DocFormat::kPades) {
      absl::StatusOr<int> pages = pades::PageCount(content);
      if (!pages.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": ", pages.status().message()));
      }
      info.set_page_count(static_cast<uint32_t>(*pages));
      if (item->input.prepared_pdf.has_value()) {
        item->pdf = *std::move(item->input.prepared_pdf);
        item->input.prepared_pdf.reset();
      } else {
        pades::PrepareOptions options{.signing_time = now};
        if (item->input.visible) {
          options.appearance = pades::AppearanceFor(out->chain_der_[0], now);
        }
        absl::StatusOr<pades::PreparedPdf> pdf = pades::PrepareSignature(content, options);
        if (!pdf.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ": ", pdf.status().message()));
        }
        item->pdf = *std::move(pdf);
      }
      content_sha256 = item->pdf->sha256;
    } else {
      content_sha256 = info.document_digest();
    }
    const std::string label = !description.empty() ? description
                              : item->input.format == DocFormat::kPades
                                  ? absl::StrCat("PDF document ", i + 1, " of ", documents.size())
                                  : absl::StrCat("Document ", i + 1, " of ", documents.size());
    info.set_label(label);
    absl::StatusOr<std::unique_ptr<cades::PreparedSignature>> cms = cades::PreparedSignature::New(
        {.content_sha256 = content_sha256,
         .signer_cert_der = out->chain_der_[0],
         .chain_der = issuers,
         // PAdES: no signingTime attribute (the time is the PDF's /M); CAdES: the claimed time.
         .signing_time = item->input.format == DocFormat::kPades ? std::nullopt
                                                                 : std::optional<absl::Time>(now)});
    if (!cms.ok()) return cms.status();
    item->cms = *std::move(cms);
    out->hashes_.push_back(item->cms->to_be_signed());
    out->descriptions_.push_back(std::move(info));
    out->items_.push_back(std::move(item));
  }
  return out;
}

const std::optional<pades::PreparedPdf>& SignDoc::prepared_pdf(size_t i) const {
  return items_[i]->pdf;
}

absl::StatusOr<std::vector<SignedDocument>> SignDoc::Finish(
    const std::vector<std::string>& signatures, const cades::TimestampFn& tsa,
    const cades::Fetcher& fetch) {
  if (signatures.size() != items_.size()) {
    return absl::InternalError("signDoc: another number of signatures than documents");
  }
  const std::vector<std::string> anchors = {chain_der_.back()};
  std::vector<SignedDocument> out;
  for (size_t i = 0; i < items_.size(); ++i) {
    Item& item = *items_[i];
    SignedDocument doc{.format = item.input.format};
    absl::StatusOr<std::string> cms;
    {
      Stopwatch watch(&timings_.finish);
      cms = item.cms->Finish(signatures[i]);
    }
    if (!cms.ok()) return Failed(FinishStep::kAssembly, cms.status());
    if (item.input.level != DocLevel::kBB) {
      Stopwatch watch(&timings_.tsa);
      cms = cades::AddSignatureTimestamp(*cms, tsa);
      if (!cms.ok()) return Failed(FinishStep::kTimestamp, cms.status());
    }
    if (item.input.level == DocLevel::kBLT) {
      Stopwatch watch(&timings_.validation);
      absl::StatusOr<cades::ValidationData> data =
          cades::CollectValidationData(*cms, anchors, fetch);
      if (!data.ok()) return Failed(FinishStep::kValidationData, data.status());
      doc.validation_data = *std::move(data);
    }
    Stopwatch watch(&timings_.finish);
    if (item.input.format == DocFormat::kPades) {
      absl::StatusOr<std::string> pdf = pades::EmbedSignature(*item.pdf, *cms);
      if (pdf.ok() && item.input.level == DocLevel::kBLT) {
        pdf = pades::AddDss(*pdf, doc.validation_data);
      }
      if (!pdf.ok()) return Failed(FinishStep::kAssembly, pdf.status());
      doc.signed_document = *std::move(pdf);
    } else {
      if (item.input.level == DocLevel::kBLT) {
        cms = cades::AddValidationData(*cms, doc.validation_data);
        if (!cms.ok()) return Failed(FinishStep::kAssembly, cms.status());
      }
      doc.signature = *std::move(cms);
    }
    out.push_back(std::move(doc));
  }
  return out;
}

absl::Status SignDoc::Failed(FinishStep step, const absl::Status& status) {
  failed_step_ = step;
  const char* what = step == FinishStep::kTimestamp        ? "timestamp authority"
                     : step == FinishStep::kValidationData ? "validation data (OCSP/CRL)"
                                                           : "signed document";
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

cades::TimestampFn HttpTimestamp(std::string tsa_url) {
  return [tsa_url = std::move(tsa_url)](const std::string& query) {
    return http::Post(tsa_url, "application/timestamp-query", query);
  };
}

cades::Fetcher HttpFetcher() {
  return {.ocsp =
              [](const std::string& url, const std::string& request) {
                return http::Post(url, "application/ocsp-request", request);
              },
          .crl = [](const std::string& url) { return http::Get(url); }};
}

}  // namespace qsign::signdoc
