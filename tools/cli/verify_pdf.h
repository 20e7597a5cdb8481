// `qsign verify FILE.pdf`: every PAdES signature of a PDF validated offline (common/cades'
// VerifyDetached over the /ByteRange, with the DSS as extra validation data): who signed, when
// (the signature timestamp's time), the certificate's status at that time from the embedded
// revocation data, the chain to the trust anchor, and whether the document changed after
// signing.
#ifndef QSIGN_TOOLS_CLI_VERIFY_PDF_H_
#define QSIGN_TOOLS_CLI_VERIFY_PDF_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/cli/context.h"

namespace qsign::cli {

// `trust_anchors_der`: self-signed roots (the deployment's root by default); `now`: the time to
// validate at. Exit kNotValid (verify.h) unless every signature is valid and the document did
// not change after signing.
Result VerifyPdf(Context& ctx, const std::string& file,
                 const std::vector<std::string>& trust_anchors_der, absl::Time now);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_VERIFY_PDF_H_
