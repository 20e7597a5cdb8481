// CSC JSON request parsing and validation: the body as a JSON object, typed access to its
// parameters (null counts as absent, CSC §7.1) with the CSC's error wording, and the checks that
// several endpoints share (credential ids, Base64 hashes, algorithm OIDs, limits). Every error is
// INVALID_ARGUMENT naming the parameter (errors.h).
#ifndef QSIGN_SERVICES_GATEWAY_PARAMS_H_
#define QSIGN_SERVICES_GATEWAY_PARAMS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/oids.h"
#include "nlohmann/json.hpp"

namespace qsign::gateway {

using Json = nlohmann::json;

inline constexpr size_t kMaxIdBytes = 128;
inline constexpr size_t kMaxSadBytes = size_t{16} * 1024;
inline constexpr size_t kMaxClientDataBytes = 4096;
inline constexpr size_t kMaxHashBase64Bytes = 128;  // SHA-512 is 88 characters of base64.
inline constexpr int kMaxDescriptionChars = 200;    // What the consent app shows as the label.

// ---- Algorithms (CSC hashAlgorithmOID, signAlgo): the tables of common/oids.h. ----

using oid::FindHashOid;
using oid::FindSignOid;
using oid::HashOid;
using oid::SignOid;

// ---- signatures/signDoc (signdoc_handlers.cc): what info lists. ----

// {"formats": ["C", "P"], "envelope_properties": [["Detached"], ["Revision"]]}.
Json SignDocFormatsInfo();
// ["Ades-B-B"], with a timestamp authority also "Ades-B-T", "Ades-B-LT".
Json SignDocLevelsInfo(bool with_tsa);

// ---- Request bodies. ----

// The body as a JSON object; an empty (or all-space) body is an empty object.
absl::StatusOr<Json> ParseJsonObject(std::string_view body);

// Typed access to the parameters of a CSC request; null counts as absent (CSC §7.1).
class Params {
 public:
  // `object` must outlive the Params.
  explicit Params(const Json& object) : object_(object) {}

  // The parameter, nullptr when absent or null.
  const Json* Find(std::string_view name) const;
  // An optional string of at most `max_bytes`.
  absl::StatusOr<std::optional<std::string>> OptString(std::string_view name,
                                                       size_t max_bytes) const;
  // A required, non-empty string of at most `max_bytes`.
  absl::StatusOr<std::string> String(std::string_view name, size_t max_bytes) const;
  absl::StatusOr<bool> Bool(std::string_view name, bool default_value) const;
  absl::StatusOr<std::optional<int64_t>> OptInteger(std::string_view name) const;
  // A required, non-empty array of strings.
  absl::StatusOr<std::vector<std::string>> StringArray(std::string_view name, size_t max_items,
                                                       size_t max_item_bytes) const;

 private:
  const Json& object_;
};

// The required credentialID: 1..64 characters of [A-Za-z0-9._-] (the signer's syntax).
absl::StatusOr<std::string> CredentialIdParam(const Params& p);

// Base64 hashes, each of the hash algorithm's length, no repeats.
absl::StatusOr<std::vector<std::string>> DecodeHashes(const std::vector<std::string>& encoded,
                                                      const HashOid& hash);

// An optional string parameter of at most `max_bytes`, not used further.
absl::Status CheckOptionalText(const Params& p, std::string_view name, size_t max_bytes);

// CSC's optional `lang` as the language of the text the user approves in the consent app
// (ConsentLanguage: sr-Latn*, en*, else sr-Cyrl); a malformed tag is refused naming `lang`.
absl::StatusOr<std::string> ConsentLanguageParam(const Params& p);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_PARAMS_H_
