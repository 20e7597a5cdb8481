// signatures/signHash: the signer signs the hashes a SAD authorizes.
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/gateway/errors.h"
#include "services/gateway/gateway.h"
#include "services/gateway/params.h"
#include "services/gateway/result.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;

}  // namespace

// ---- signatures/signHash ----

absl::StatusOr<Gateway::Result> Gateway::SignaturesSignHash(const CscRequest& request) const {
  auto call = BeginOnCredential(request, /*fetch_info=*/false);
  if (!call.ok()) return call.status();
  Params p(call->body);
  // A credential-scope token carries the SAD of the user's approval (CSC §8.3.2): SAD optional.
  const bool credential_scope = call->token.scope == "credential";
  auto given_sad = p.OptString("SAD", kMaxSadBytes);
  if (!given_sad.ok()) return given_sad.status();
  if (!given_sad->has_value() && !credential_scope) return MissingParameter("string", "SAD");
  const std::string sad = given_sad->value_or(call->token.sad);
  auto sign_algo = p.String("signAlgo", 64);
  if (!sign_algo.ok()) return sign_algo.status();
  const SignOid* sign = FindSignOid(*sign_algo);
  if (sign == nullptr)
    return InvalidParameter("signAlgo", "not supported; info lists the algorithms");
  auto hash_oid = p.OptString("hashAlgorithmOID", 64);
  if (!hash_oid.ok()) return hash_oid.status();
  const HashOid* hash = nullptr;
  if (hash_oid->has_value()) {
    hash = FindHashOid(**hash_oid);
    if (hash == nullptr) {
      return InvalidParameter("hashAlgorithmOID", "SHA-256, SHA-384 or SHA-512");
    }
    if (sign->implied_hash != nullptr && std::string_view(sign->implied_hash) != hash->oid) {
      return absl::InvalidArgumentError(
          "String parameter hashAlgorithmOID contradicts with signAlgo parameter");
    }
  } else if (sign->implied_hash != nullptr) {
    hash = FindHashOid(sign->implied_hash);
  } else {
    return MissingParameter("string", "hashAlgorithmOID");
  }
  if (p.Find("signAlgoParams") != nullptr) {
    return InvalidParameter("signAlgoParams",
                            "not supported (RSASSA-PSS uses MGF1 with the hash algorithm and a "
                            "salt of the hash's length)");
  }
  auto mode = p.OptString("operationMode", 8);
  if (!mode.ok()) return mode.status();
  if (mode->has_value() && **mode != "S") {
    return InvalidParameter("operationMode", "only synchronous signing (\"S\") is supported");
  }
  auto encoded = p.StringArray("hashes", config_.max_hashes, kMaxHashBase64Bytes);
  if (!encoded.ok()) return encoded.status();
  auto hashes = DecodeHashes(*encoded, *hash);
  if (!hashes.ok()) return hashes.status();
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;

  pb::SignHashRequest req;
  req.set_credential_id(call->credential_id);
  req.set_hash_algorithm_oid(hash->oid);
  req.set_sign_algorithm_oid(sign->oid);
  for (auto& h : *hashes) req.add_hashes(std::move(h));
  req.set_sad(sad);
  auto signed_hashes = backend_->SignHash(req);
  if (!signed_hashes.ok()) return FromSignHash(signed_hashes.status());
  Json signatures = Json::array();
  for (const auto& sig : signed_hashes->signatures()) signatures.push_back(EncodeBase64(sig));
  return Result{.body = {{"signatures", std::move(signatures)}}};
}

}  // namespace qsign::gateway
