#include "services/gateway/params.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/gateway/errors.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/text.h"

namespace qsign::gateway {

absl::StatusOr<Json> ParseJsonObject(std::string_view body) {
  if (std::all_of(body.begin(), body.end(), [](char c) { return absl::ascii_isspace(c); })) {
    return Json::object();  // CSC allows an empty body for methods without required input.
  }
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("Malformed JSON in the request body");
  if (!json.is_object()) {
    return absl::InvalidArgumentError("The request body must be a JSON object");
  }
  return json;
}

const Json* Params::Find(std::string_view name) const {
  auto it = object_.find(std::string(name));
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<std::string>> Params::OptString(std::string_view name,
                                                             size_t max_bytes) const {
  const Json* v = Find(name);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return MissingParameter("string", name);
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_bytes) {
    return InvalidParameter(name, absl::StrCat("longer than ", max_bytes, " bytes"));
  }
  return std::optional<std::string>(s);
}

absl::StatusOr<std::string> Params::String(std::string_view name, size_t max_bytes) const {
  auto s = OptString(name, max_bytes);
  if (!s.ok()) return s.status();
  if (!s->has_value() || (*s)->empty()) return MissingParameter("string", name);
  return **s;
}

absl::StatusOr<bool> Params::Bool(std::string_view name, bool default_value) const {
  const Json* v = Find(name);
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) return MissingParameter("boolean", name);
  return v->get<bool>();
}

absl::StatusOr<std::optional<int64_t>> Params::OptInteger(std::string_view name) const {
  const Json* v = Find(name);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return InvalidParameter(name, "out of range");
    return std::optional<int64_t>(static_cast<int64_t>(u));
  }
  if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
  return MissingParameter("integer", name);
}

absl::StatusOr<std::vector<std::string>> Params::StringArray(std::string_view name,
                                                             size_t max_items,
                                                             size_t max_item_bytes) const {
  const Json* v = Find(name);
  if (v == nullptr || !v->is_array()) return MissingParameter("array", name);
  if (v->empty()) return InvalidParameter(name, "empty array");
  if (v->size() > max_items) {
    return InvalidParameter(name, absl::StrCat("more than ", max_items, " elements"));
  }
  std::vector<std::string> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    if (!item.is_string() || item.get_ref<const std::string&>().size() > max_item_bytes) {
      return InvalidParameter(name, absl::StrCat("element ", i, " is not a string of at most ",
                                                 max_item_bytes, " bytes"));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::string> CredentialIdParam(const Params& p) {
  auto id = p.String("credentialID", kMaxIdBytes);
  if (!id.ok()) return id.status();
  if (!IsValidClientId(*id)) {  // Same syntax as the signer's: 1..64 of [A-Za-z0-9._-].
    return InvalidParameter("credentialID", "1..64 characters of [A-Za-z0-9._-]");
  }
  return id;
}

// Base64 hashes, each of the hash algorithm's length, no repeats.
absl::StatusOr<std::vector<std::string>> DecodeHashes(const std::vector<std::string>& encoded,
                                                      const HashOid& hash) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < encoded.size(); ++i) {
    auto raw = DecodeBase64(encoded[i]);
    if (!raw) return InvalidParameter("hashes", absl::StrCat("element ", i, " is not Base64"));
    if (raw->size() != hash.length) {
      return InvalidParameter(
          "hashes", absl::StrCat("Invalid digest value length: element ", i, " has ", raw->size(),
                                 " bytes, ", hash.oid, " needs ", hash.length));
    }
    if (!seen.insert(*raw).second) {
      return InvalidParameter("hashes", absl::StrCat("element ", i, " repeats an earlier hash"));
    }
    out.push_back(*std::move(raw));
  }
  return out;
}

absl::Status CheckOptionalText(const Params& p, std::string_view name, size_t max_bytes) {
  auto v = p.OptString(name, max_bytes);
  return v.status();
}

absl::StatusOr<std::string> ConsentLanguageParam(const Params& p) {
  auto lang = p.OptString("lang", 64);
  if (!lang.ok()) return lang.status();
  const std::optional<std::string_view> language = ConsentLanguage(lang->value_or(""));
  if (!language.has_value()) {
    return InvalidParameter("lang", "an RFC 5646 language tag, e.g. sr-Cyrl, sr-Latn, en");
  }
  return std::string(*language);
}

}  // namespace qsign::gateway
