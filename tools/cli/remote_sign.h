// One remote signing round trip of the `qsign` CLI: the consent request describing the documents
// (Consent.Authorize), the wait for the user's approval in the app (AwaitAuthorization), and the
// signatures by the credential's HSM key with the SAD (Signer.SignHash). The hashes are those of
// CMS signed attributes; the user is shown the documents (name, pages, SHA-256 of the file).
#ifndef QSIGN_TOOLS_CLI_REMOTE_SIGN_H_
#define QSIGN_TOOLS_CLI_REMOTE_SIGN_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsign/v1/consent.pb.h"
#include "qsign/v1/lifecycle.pb.h"
#include "tools/cli/context.h"

namespace qsign::cli {

class RemoteSignature {
 public:
  RemoteSignature(Context& ctx, std::string bearer, v1::Certificate cert, int timeout_seconds)
      : ctx_(ctx), bearer_(std::move(bearer)), cert_(std::move(cert)), timeout_(timeout_seconds) {}

  // SHA-256 `hashes`, one per document in `documents` (same order), under one approval: the
  // DER signatures in the same order. On a failure to show the user (refused, denied, not in
  // time) failure() holds it and the status is ABORTED.
  absl::StatusOr<std::vector<std::string>> Sign(const std::vector<std::string>& hashes,
                                                const std::vector<v1::DocumentInfo>& documents);

  const std::optional<Failure>& failure() const { return failure_; }

 private:
  absl::Status Fail(Failure failure);

  Context& ctx_;
  const std::string bearer_;
  const v1::Certificate cert_;
  const int timeout_;
  std::optional<Failure> failure_;
};

// The account's ACTIVE certificate (issuers up to the root in issuer_chain_der), for the stored
// session's bearer; a failure to show the user when there is none.
Result ActiveCertificate(Context& ctx, const std::string& bearer, v1::Certificate* cert);

// What the user is shown for a file: its name (label and document_name), its SHA-256 and, for a
// PDF, its page count (0: not given).
v1::DocumentInfo DescribeDocument(const std::string& file_name, const std::string& file_sha256,
                                  int page_count);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_REMOTE_SIGN_H_
