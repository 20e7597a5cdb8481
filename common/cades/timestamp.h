// RFC 3161 time-stamp protocol, the requester's side, and CAdES-B-T (ETSI EN 319 122-1 5.3):
// a TimeStampReq for a SHA-256 imprint, the checks on the TSA's reply (status granted, the same
// imprint, the nonce echoed), and the signature-time-stamp unsigned attribute over a
// SignerInfo's signature value. No transport here: the caller posts the query (HTTP
// application/timestamp-query, or qsign.v1.Tsa.Timestamp) through a TimestampFn.
#ifndef QSIGN_COMMON_CADES_TIMESTAMP_H_
#define QSIGN_COMMON_CADES_TIMESTAMP_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::cades {

// id-aa-signatureTimeStampToken (RFC 3161 appendix A, CAdES).
inline constexpr char kSignatureTimeStampTokenOid[] = "1.2.840.113549.1.9.16.2.14";

// Sends a DER TimeStampReq to a TSA and answers its DER TimeStampResp.
using TimestampFn = std::function<absl::StatusOr<std::string>(const std::string& query_der)>;

// A DER TimeStampReq (version 1) over the digest `sha256` — SHA-256, or SHA-384/512 by its
// length (32, 48, 64 bytes) — with `nonce` (big-endian bytes, at most 32; empty: none) and
// certReq.
absl::StatusOr<std::string> TimestampQuery(std::string_view sha256, std::string_view nonce,
                                           bool cert_req = true);

// A fresh random 8-byte nonce for TimestampQuery.
std::string RandomNonce();

struct TimestampToken {
  std::string der;         // The TimeStampToken (a CMS ContentInfo).
  absl::Time gen_time;     // TSTInfo.genTime.
  std::string serial_hex;  // TSTInfo.serialNumber, upper-case hex.
  std::string policy_oid;  // TSTInfo.policy, dotted.
};

// The token of a DER TimeStampResp. FAILED_PRECONDITION with the TSA's status and failure
// text when it was not granted; INVALID_ARGUMENT when the reply is not DER, or its imprint or
// nonce is not the query's. The token's signature is not verified here (VerifyDetached does).
absl::StatusOr<TimestampToken> ParseTimestampReply(std::string_view reply_der,
                                                   std::string_view sha256, std::string_view nonce);

// genTime, serial and policy of a DER TimeStampToken (no checks of its signature).
absl::StatusOr<TimestampToken> ReadTimestampToken(std::string_view token_der);

// CAdES-B-T: `cms_der` (one SignerInfo) with an id-aa-signatureTimeStampToken unsigned attribute
// from `tsa` over SHA-256 of the SignerInfo's signature value. Replaces nothing already there.
absl::StatusOr<std::string> AddSignatureTimestamp(std::string_view cms_der, const TimestampFn& tsa);

// The token in `tsa`'s reply for SHA-256 `sha256`, with a fresh nonce (PAdES document
// timestamps, CSC signatures/timestamp clients).
absl::StatusOr<TimestampToken> RequestTimestamp(std::string_view sha256, const TimestampFn& tsa);

// The TSA's side: a DER TimeStampResp granting `token_der`, and one rejecting with
// PKIFailureInfo bit `fail_info_bit` (RFC 3161 2.4.2: badAlg 0, badRequest 2, badDataFormat 5,
// timeNotAvailable 14, unacceptedPolicy 15, unacceptedExtension 16, systemFailure 25) and `text`.
std::string GrantedReply(std::string_view token_der);
std::string RejectionReply(int fail_info_bit, std::string_view text);

}  // namespace qsign::cades

#endif  // QSIGN_COMMON_CADES_TIMESTAMP_H_
