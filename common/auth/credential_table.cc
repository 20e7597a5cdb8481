#include "common/auth/credential_table.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/strings.h"

namespace qsign::auth {
namespace {

constexpr char kExpectedForms[] =
    "authorization: expected \"Bearer <session token>\", \"Operator <id>.<secret>\" or "
    "\"Service <id>.<secret>\"";

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateCredentialId(std::string_view id) {
  if (id.empty() || id.size() > 64) return absl::InvalidArgumentError("id: 1..64 characters");
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return absl::InvalidArgumentError("id: letters, digits, '_' and '-' only");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PresentedCredential> ParseAuthorization(std::string_view value) {
  PresentedCredential out;
  if (value.empty()) return out;
  const size_t space = value.find(' ');
  if (space == std::string_view::npos) return absl::UnauthenticatedError(kExpectedForms);
  const std::string_view scheme = value.substr(0, space);
  const std::string_view rest = value.substr(space + 1);
  if (rest.empty()) return absl::UnauthenticatedError(kExpectedForms);
  if (scheme == "Bearer") {
    out.scheme = PresentedCredential::Scheme::kBearer;
    out.secret = SecretString(std::string(rest));
    return out;
  }
  if (scheme == "Operator") {
    out.scheme = PresentedCredential::Scheme::kOperator;
  } else if (scheme == "Service") {
    out.scheme = PresentedCredential::Scheme::kService;
  } else {
    return absl::UnauthenticatedError(kExpectedForms);
  }
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot + 1 == rest.size() ||
      !ValidateCredentialId(rest.substr(0, dot)).ok()) {
    return absl::UnauthenticatedError(kExpectedForms);
  }
  out.id = std::string(rest.substr(0, dot));
  out.secret = SecretString(std::string(rest.substr(dot + 1)));
  return out;
}

absl::Status CredentialTable::Add(std::string_view id, std::string hash) {
  if (auto s = ValidateCredentialId(id); !s.ok()) return s;
  if (!hashes_.emplace(std::string(id), std::move(hash)).second) {
    return absl::InvalidArgumentError(absl::StrCat("credential id ", Av(id), " listed twice"));
  }
  return absl::OkStatus();
}

absl::Status CredentialTable::AddSecret(std::string_view id, std::string_view secret) {
  if (secret.empty()) return absl::InvalidArgumentError("secret: required");
  return Add(id, Sha256(secret));
}

absl::StatusOr<CredentialTable> CredentialTable::Parse(std::string_view text) {
  CredentialTable table;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(Av(text), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (parts.size() != 2 || parts[1].size() != 64 || !IsLowerHex(parts[1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "credential table line ", line_no, ": expected \"<id> <sha256 of the secret, hex>\""));
    }
    if (auto s = table.Add(Sv(parts[0]), absl::HexStringToBytes(parts[1])); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("credential table line ", line_no, ": ", s.message()));
    }
  }
  return table;
}

absl::StatusOr<CredentialTable> CredentialTable::FromFile(std::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read credential table ", Av(path)));
  std::string text(std::istreambuf_iterator<char>(in), {});
  auto table = Parse(text);
  if (!table.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(Av(path), ": ", table.status().message()));
  }
  return table;
}

bool CredentialTable::Check(std::string_view id, std::string_view secret) const {
  static const std::string kNoSuchId(32, '\0');
  const std::string presented = Sha256(secret);
  auto it = hashes_.find(Av(id));
  const bool match = ConstantTimeEquals(presented, it == hashes_.end() ? kNoSuchId : it->second);
  return match && it != hashes_.end();
}

}  // namespace qsign::auth
