// Signing documents with a remote key: PAdES for PDFs and detached CAdES for any file, at B-B,
// B-T or B-LT, for N documents under ONE approval of the user (CSC signatures/signDoc in the
// gateway, the portal's "sign a file" in the web). Prepare fixes every
// signature's signed attributes and answers their SHA-256 (what the user approves, what the
// signer signs) with what the consent app shows of each document (pages, SHA-256); Finish takes
// the signer's signatures and builds the signed documents (timestamps from the TSA, validation
// data from OCSP for B-LT). No JSON and no HTTP here; the transports are functions.
#ifndef QSIGN_COMMON_SIGNDOC_SIGNDOC_H_
#define QSIGN_COMMON_SIGNDOC_SIGNDOC_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/pades/pdf_signature.h"
#include "qsign/v1/consent.pb.h"

namespace qsign::signdoc {

enum class DocFormat { kPades, kCades };
enum class DocLevel { kBB, kBT, kBLT };

struct DocumentToSign {
  std::string content;  // The PDF, or any file for CAdES.
  DocFormat format = DocFormat::kPades;
  DocLevel level = DocLevel::kBB;
  bool visible = false;  // PAdES: a box with the signer's name on page 1.
  // PAdES: the PDF with its placeholder from an earlier Prepare of the same document, chain and
  // time (prepared_pdf(i)), to finish a signature elsewhere (another web replica): PoDoFo writes
  // the current time into the update, so preparing again would change the hash.
  std::optional<pades::PreparedPdf> prepared_pdf;
};

struct SignedDocument {
  DocFormat format = DocFormat::kPades;
  std::string signed_document;            // PAdES: the signed PDF.
  std::string signature;                  // CAdES: the detached .p7s (DER CMS).
  cades::ValidationData validation_data;  // B-LT: what was embedded.
};

// The step of Finish that failed: the transports' failures are told apart so that a caller can
// name the party that did not answer (the TSA, an OCSP/CRL responder).
enum class FinishStep { kNone, kAssembly, kTimestamp, kValidationData };

// Where the time of a signDoc call went (for Server-Timing and the bench).
struct SignDocTimings {
  absl::Duration prepare;     // PDF writing and signed attributes.
  absl::Duration finish;      // CMS assembly and PDF embedding, DSS writing.
  absl::Duration tsa;         // Timestamp requests.
  absl::Duration validation;  // OCSP requests for B-LT.
};

class SignDoc {
 public:
  // `chain_der`: the signer's certificate first, then its issuers up to the root.
  static absl::StatusOr<std::unique_ptr<SignDoc>> Prepare(std::vector<DocumentToSign> documents,
                                                          std::vector<std::string> chain_der,
                                                          absl::Time now, std::string description);
  ~SignDoc();

  // SHA-256 of each signature's signed attributes, in document order.
  const std::vector<std::string>& hashes() const { return hashes_; }
  // PAdES: document i's PDF with its placeholder (DocumentToSign.prepared_pdf).
  const std::optional<pades::PreparedPdf>& prepared_pdf(size_t i) const;
  // What the user is shown of each document, in document order.
  const std::vector<v1::DocumentInfo>& descriptions() const { return descriptions_; }

  // The signed documents, given the signer's signature of each hash (same order).
  absl::StatusOr<std::vector<SignedDocument>> Finish(const std::vector<std::string>& signatures,
                                                     const cades::TimestampFn& tsa,
                                                     const cades::Fetcher& fetch);

  // After Finish failed: which step (the status's message also starts with its name:
  // "timestamp authority: ...", "validation data (OCSP/CRL): ...").
  FinishStep failed_step() const { return failed_step_; }

  const SignDocTimings& timings() const { return timings_; }

 private:
  struct Item;
  SignDoc();
  // Records `step` as the failed one; `status` with the step's name before its message.
  absl::Status Failed(FinishStep step, const absl::Status& status);
  std::vector<std::unique_ptr<Item>> items_;
  std::vector<std::string> chain_der_;
  std::vector<std::string> hashes_;
  std::vector<v1::DocumentInfo> descriptions_;
  SignDocTimings timings_;
  FinishStep failed_step_ = FinishStep::kNone;
};

// The transports over HTTP (common/http/client.h): RFC 3161 application/timestamp-query POSTed
// to `tsa_url`, OCSP requests POSTed and CRLs fetched at the URLs the certificates name.
cades::TimestampFn HttpTimestamp(std::string tsa_url);
cades::Fetcher HttpFetcher();

}  // namespace qsign::signdoc

#endif  // QSIGN_COMMON_SIGNDOC_SIGNDOC_H_
