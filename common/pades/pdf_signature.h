// PAdES (ETSI EN 319 142-1) on the PDF side: a signature field whose /Contents is a detached
// CMS (/SubFilter /ETSI.CAdES.detached) over the /ByteRange, written as an incremental update so
// that earlier signatures stay valid; a DSS (Document Security Store) with validation data for
// B-LT; and the reading back of every signature for verification. The CMS itself is built by
// common/cades; nothing here holds a key. PoDoFo (0.9.8) parses and writes the PDF.
#ifndef QSIGN_COMMON_PADES_PDF_SIGNATURE_H_
#define QSIGN_COMMON_PADES_PDF_SIGNATURE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cades/validation_data.h"

namespace qsign::pades {

// The default font of visible signatures: DejaVu Sans (Debian fonts-dejavu-core), which has
// the Serbian Cyrillic and Latin letters.
inline constexpr char kDefaultFontFile[] = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

// A visible signature: a box on a page with the signer's name and a second line (the time).
struct Appearance {
  std::string signer_name;  // UTF-8, Cyrillic or Latin.
  std::string detail;       // UTF-8, e.g. "2026-12-05 02:10 UTC".
  int page = 1;             // 1-based.
  // Lower-left corner and size in PDF points, from the page's lower-left corner.
  double x = 36, y = 36, width = 240, height = 54;
  std::string font_file = kDefaultFontFile;
};

// The visible appearance of a signer's signature: the certificate's commonName (UTF-8, as
// issued: Cyrillic stays Cyrillic) and "Потписано / Signed <when, UTC>".
Appearance AppearanceFor(std::string_view signer_cert_der, absl::Time when);

struct PrepareOptions {
  absl::Time signing_time;  // The /M entry (the claimed time; the timestamp is the proof).
  std::string field_name;   // Empty: "Signature<n>", unused in the document.
  std::string reason;       // Optional /Reason, UTF-8.
  std::string location;     // Optional /Location, UTF-8.
  std::optional<Appearance> appearance;  // None: an invisible signature.
  // Bytes reserved for the DER CMS (the /Contents hex string is twice as long).
  size_t contents_size = 32768;
};

// A PDF with a signature field whose /Contents is a zero-filled placeholder.
struct PreparedPdf {
  std::string pdf;
  std::array<int64_t, 4> byte_range{};  // offset, length, offset, length.
  std::string sha256;                   // SHA-256 over the byte ranges: the CMS messageDigest.
  std::string field_name;
};

// Adds a signature field (and its widget, visible or not) to `pdf` as an incremental update.
// Refuses what is not a PDF with at least one page, an encrypted PDF, and an appearance on a
// page that does not exist (INVALID_ARGUMENT, naming the problem).
absl::StatusOr<PreparedPdf> PrepareSignature(std::string_view pdf, const PrepareOptions& options);

// Writes the DER CMS into the placeholder; OUT_OF_RANGE if it does not fit.
absl::StatusOr<std::string> EmbedSignature(const PreparedPdf& prepared, std::string_view cms_der);

// Adds (or extends) the catalog's /DSS with `material` as an incremental update; entries already
// in the DSS are not repeated.
absl::StatusOr<std::string> AddDss(std::string_view pdf, const cades::ValidationData& material);

// One signature of a PDF as found in it (not yet verified cryptographically).
struct FoundSignature {
  std::string field_name;
  std::string sub_filter;  // e.g. "ETSI.CAdES.detached".
  std::array<int64_t, 4> byte_range{};
  std::string cms_der;        // /Contents without its zero padding.
  std::string signed_sha256;  // SHA-256 over the byte ranges as they are in the file now.
  std::optional<absl::Time> claimed_time;  // /M.
  // The byte ranges are well formed: start at 0, the gap is exactly the /Contents string, and
  // they end at the end of a revision (an %%EOF).
  bool byte_range_ok = false;
  std::string byte_range_problem;
  // Bytes after the signed revision that no later signature covers and that are not a DSS
  // update (i.e. the document was changed after this signature); 0 when none.
  int64_t unsigned_trailing_bytes = 0;
};

struct PdfFacts {
  int page_count = 0;
  std::vector<FoundSignature> signatures;  // In file order (the first signed first).
  cades::ValidationData dss;               // What the /DSS holds.
};

// Reads the page count, every signature field that has a value, and the DSS. INVALID_ARGUMENT for
// what is not a PDF.
absl::StatusOr<PdfFacts> ReadPdf(std::string_view pdf);

// The number of pages, for the consent app's description of a document.
absl::StatusOr<int> PageCount(std::string_view pdf);

}  // namespace qsign::pades

#endif  // QSIGN_COMMON_PADES_PDF_SIGNATURE_H_
