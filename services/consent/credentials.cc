#include "services/consent/credentials.h"

#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string Sha256(std::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

absl::StatusOr<PresentedCredential> ParseAuthorization(std::string_view value) {
  PresentedCredential out;
  if (value.empty()) return out;
  const absl::Status bad = absl::UnauthenticatedError(
      "authorization: expected \"Bearer <token>\", \"Operator <id>.<secret>\" or "
      "\"Service <id>.<secret>\"");
  const size_t space = value.find(' ');
  if (space == std::string_view::npos) return bad;
  const std::string_view scheme = value.substr(0, space);
  const std::string_view rest = value.substr(space + 1);
  if (rest.empty()) return bad;
  if (scheme == "Bearer") {
    out.scheme = PresentedCredential::Scheme::kBearer;
    out.secret = SecretString(std::string(rest));
    return out;
  }
  if (scheme != "Operator" && scheme != "Service") return bad;
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == rest.size()) return bad;
  out.scheme = scheme == "Operator" ? PresentedCredential::Scheme::kOperator
                                    : PresentedCredential::Scheme::kService;
  out.id = std::string(rest.substr(0, dot));
  if (!ValidId(out.id)) return bad;
  out.secret = SecretString(std::string(rest.substr(dot + 1)));
  return out;
}

absl::StatusOr<CredentialTable> CredentialTable::Parse(std::string_view text) {
  CredentialTable table;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(Av(text), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (parts.size() != 2 || parts[1].size() != 64 ||
        !std::all_of(parts[1].begin(), parts[1].end(),
                     [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); })) {
      return absl::InvalidArgumentError(
          absl::StrCat("credentials line ", line_no, ": expected \"<id> <64 hex digits>\""));
    }
    if (auto s = table.Add(Sv(parts[0]), absl::HexStringToBytes(parts[1])); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("credentials line ", line_no, ": ", s.message()));
    }
  }
  return table;
}

absl::StatusOr<CredentialTable> CredentialTable::FromFile(std::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) return absl::NotFoundError(absl::StrCat("credentials file ", Av(path), ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str());
}

absl::Status CredentialTable::AddSecret(std::string_view id, std::string_view secret) {
  return Add(id, Sha256(secret));
}

absl::Status CredentialTable::Add(std::string_view id, std::string hash) {
  if (!ValidId(id)) return absl::InvalidArgumentError("id: 1..64 characters of [A-Za-z0-9_-]");
  if (!hashes_.emplace(std::string(id), std::move(hash)).second) {
    return absl::InvalidArgumentError(absl::StrCat("id ", Av(id), " repeated"));
  }
  return absl::OkStatus();
}

bool CredentialTable::Check(std::string_view id, std::string_view secret) const {
  static const std::string kNoHash(SHA256_DIGEST_LENGTH, '\xff');
  auto it = hashes_.find(Av(id));
  const std::string& want = it == hashes_.end() ? kNoHash : it->second;
  const bool match = ConstantTimeEquals(Sha256(secret), want);
  return it != hashes_.end() && match;
}

}  // namespace qsign::consent
