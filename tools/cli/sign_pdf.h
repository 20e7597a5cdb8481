// `qsign sign FILE.pdf --format=pades`: a PAdES baseline signature (ETSI EN 319 142-1) at B-B,
// B-T or B-LT, added to the PDF as an incremental update (docs/pades.md). The user approves the
// hash of the CMS signed attributes in the consent app, shown the file's name, page count and
// SHA-256.
#ifndef QSIGN_TOOLS_CLI_SIGN_PDF_H_
#define QSIGN_TOOLS_CLI_SIGN_PDF_H_

#include <string>

#include "tools/cli/context.h"

namespace qsign::cli {

struct PadesSignOptions {
  std::string level = "B-B";  // "B-B", "B-T", "B-LT".
  bool visible = false;       // A box with the signer's name on page 1.
  std::string out;            // Default: FILE with ".pdf" replaced by "-signed.pdf".
  std::string tsa_url;        // RFC 3161 over HTTP, for B-T and B-LT.
  int timeout_seconds = 120;  // For the approval.
};

Result SignPdf(Context& ctx, const std::string& file, const PadesSignOptions& options);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_SIGN_PDF_H_
