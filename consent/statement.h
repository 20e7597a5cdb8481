// The canonical statement of a consent request: the exact bytes the consent app shows and signs
// (followed by the decision byte), and the server rebuilds from its own record to check the
// approval. Shared by the consent service, the app simulator and any verifier.
//
// Format (docs/consent.md): the label "QSIGN-CONSENT-STATEMENT-V1\n", then fields as
// tag (1 byte) || length (4 bytes, big-endian) || value, in a fixed order, each tag at most once
// except the repeated hash and document fields. Times are 8-byte big-endian microseconds since
// the Unix epoch. One value has exactly one encoding: DecodeStatement refuses anything that
// EncodeStatement would not have produced (order, unknown tags, trailing bytes).
//
// A challenge (WatchRequests), an approval and a PIN operation each begin with their own label,
// so a signature made for one never passes as another.
#ifndef QSIGN_CONSENT_STATEMENT_H_
#define QSIGN_CONSENT_STATEMENT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::consent {

inline constexpr std::string_view kStatementLabel = "QSIGN-CONSENT-STATEMENT-V1\n";
inline constexpr std::string_view kChallengeLabel = "QSIGN-CONSENT-CHALLENGE-V1\n";
inline constexpr std::string_view kApprovalLabel = "QSIGN-CONSENT-APPROVAL-V2\n";
inline constexpr std::string_view kPinOperationLabel = "QSIGN-CONSENT-PIN-V1\n";

// Initial metadata key the server sends (value "open") on WatchRequests once the device is
// authenticated, so the app knows the stream is open before any request arrives.
inline constexpr std::string_view kWatchOpenMetadata = "qsign-watch";

// Values are the proto enum values (ConsentRequestKind, ConsentDecision).
enum class RequestKind : uint8_t { kLogin = 1, kSign = 2 };
enum class Decision : uint8_t { kApprove = 1, kDeny = 2 };

struct DocumentInfo {
  std::string label;
  std::string document_name;
  std::string document_digest;  // Raw bytes; empty when not given.
  uint32_t page_count = 0;      // 0 when not given (then not in the statement either).
  bool operator==(const DocumentInfo&) const = default;
};

struct LoginDetails {
  std::string verification_code;
  std::string client_description;
  bool operator==(const LoginDetails&) const = default;
};

struct SignDetails {
  std::string credential_id;
  std::string relying_party_name;
  std::string hash_algorithm_oid;
  std::vector<std::string> hashes;      // Raw bytes, in order.
  std::vector<DocumentInfo> documents;  // Empty, or one per hash.
  bool operator==(const SignDetails&) const = default;
};

struct Statement {
  RequestKind kind = RequestKind::kLogin;
  std::string request_id;
  std::string account_id;
  // Microsecond precision (finer parts are dropped by the encoding).
  absl::Time created_at;
  absl::Time expires_at;
  std::string display_text;
  LoginDetails login;  // kind == kLogin only; empty otherwise.
  SignDetails sign;    // kind == kSign only; empty otherwise.
  bool operator==(const Statement&) const = default;
};

// The canonical bytes. Fields of the other kind are not encoded.
std::string EncodeStatement(const Statement& statement);

// Strict inverse of EncodeStatement: INVALID_ARGUMENT "statement: ..." for anything else.
absl::StatusOr<Statement> DecodeStatement(std::string_view bytes);

// What the device signs to decide (Approve), with a one-time challenge from
// GetApprovalChallenge so that one signature serves one attempt:
//   kApprovalLabel || 0x01 statement || 0x02 decision byte || 0x03 challenge (TLV as above).
std::string ApprovalMessage(std::string_view statement, Decision decision,
                            std::string_view challenge);

// Values are the bytes signed: what a PIN operation of the app does.
enum class PinOperation : uint8_t { kChange = 1, kReset = 2 };

// What the device signs for ChangePin / ResetPin:
//   kPinOperationLabel || 0x01 operation byte || 0x02 device id || 0x03 challenge.
std::string PinOperationMessage(PinOperation op, std::string_view device_id,
                                std::string_view challenge);

// The challenge for opening WatchRequests: label, device id, expiry and a random nonce.
std::string EncodeChallenge(std::string_view device_id, absl::Time expires_at,
                            std::string_view nonce);

// The language of a request's display text (inside the statement: the app shows and signs it).
enum class DisplayLanguage { kSrCyrl, kSrLatn, kEn };

// "sr-Cyrl" (also empty: the default), "sr-Latn", "en"; anything else INVALID_ARGUMENT naming
// `field`.
absl::StatusOr<DisplayLanguage> ParseDisplayLanguage(std::string_view tag,
                                                     std::string_view field = "language");

// The one-line text shown with a request, in `lang`: "Пријава на еИД портал, код 4721",
// "Prijava na eID portal, kod 4721", "Log in to eID portal, code 4721".
std::string LoginDisplayText(const LoginDetails& login,
                             DisplayLanguage lang = DisplayLanguage::kSrCyrl);
// "Потпиши „Уговор“ за е-Управа", "Potpiši „Ugovor“ za e-Uprava", "Sign "Ugovor" for e-Uprava"
// (the label and the relying party's name as given).
std::string SignDisplayText(const SignDetails& sign,
                            DisplayLanguage lang = DisplayLanguage::kSrCyrl);

// Drops what finer than a microsecond: the precision of statements and of PostgreSQL.
absl::Time TruncateToMicros(absl::Time t);

}  // namespace qsign::consent

#endif  // QSIGN_CONSENT_STATEMENT_H_
