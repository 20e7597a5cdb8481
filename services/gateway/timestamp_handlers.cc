// signatures/timestamp (CSC API v2 11.12): an RFC 3161 timestamp token for a hash, from qsign's
// TSA (qsign.v1.Tsa.Timestamp), for signature applications that build B-T themselves.
#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/cades/timestamp.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {

absl::StatusOr<Gateway::Result> Gateway::SignaturesTimestamp(const CscRequest& request) const {
  auto call = Begin(request);
  if (!call.ok()) return call.status();
  Params p(call->body);
  auto hash_oid = p.String("hashAlgorithmOID", 64);
  if (!hash_oid.ok()) return hash_oid.status();
  const HashOid* hash = FindHashOid(*hash_oid);
  if (hash == nullptr) return InvalidParameter("hashAlgorithmOID", "SHA-256, SHA-384 or SHA-512");
  auto encoded = p.String("hash", kMaxHashBase64Bytes);
  if (!encoded.ok()) return encoded.status();
  auto hashes = DecodeHashes({*encoded}, *hash);
  if (!hashes.ok()) {
    return InvalidParameter("hash", "base64 of a digest of the hashAlgorithmOID's length");
  }
  auto nonce_hex = p.OptString("nonce", 64);
  if (!nonce_hex.ok()) return nonce_hex.status();
  std::string nonce;
  if (nonce_hex->has_value()) {
    const std::string& hex = **nonce_hex;
    if (hex.empty() || hex.size() % 2 != 0 ||
        !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
      return InvalidParameter("nonce", "an even number of hexadecimal digits, at most 64");
    }
    nonce = absl::HexStringToBytes(hex);
  } else {
    nonce = cades::RandomNonce();
  }
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;

  auto query = cades::TimestampQuery(hashes->front(), nonce, /*cert_req=*/true);
  if (!query.ok()) return absl::InternalError(query.status().message());
  qsign::v1::TimestampRequest req;
  req.set_query(*query);
  auto reply = backend_->Timestamp(req);
  if (!reply.ok()) return FromService("timestamp authority", reply.status());
  auto token = cades::ParseTimestampReply(reply->reply(), hashes->front(), nonce);
  if (!token.ok()) {
    // The TSA refused (its reason is in the PKIStatus text) or answered something else.
    return absl::InternalError(absl::StrCat("timestamp authority: ", token.status().message()));
  }
  return Result{.body = {{"timestamp", EncodeBase64(token->der)}}};
}

}  // namespace qsign::gateway
