#include "services/gateway/relying_parties.h"

#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ossl.h"
#include "common/secret.h"
#include "common/strings.h"
#include "services/gateway/text.h"

namespace qsign::gateway {
namespace {

bool IsHex64(absl::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return absl::ascii_isxdigit(static_cast<unsigned char>(c));
         });
}

}  // namespace

bool IsValidClientId(std::string_view client_id) {
  if (client_id.empty() || client_id.size() > 64) return false;
  return std::all_of(client_id.begin(), client_id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

absl::StatusOr<RelyingPartyTable> RelyingPartyTable::Parse(std::string_view text) {
  RelyingPartyTable table;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(Av(text), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '+') {
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      absl::Status s = absl::InvalidArgumentError(
          "expected \"+redirect_uri <client id> <URI>\" or \"+client_credentials <client id>\"");
      if (parts[0] == "+redirect_uri" && parts.size() == 3) {
        s = table.AddRedirectUri(Sv(parts[1]), Sv(parts[2]));
      } else if (parts[0] == "+client_credentials" && parts.size() == 2) {
        s = table.AllowClientCredentials(Sv(parts[1]));
      }
      if (!s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("relying parties line ", line_no, ": ", s.message()));
      }
      continue;
    }
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    if (parts.size() != 3 || !IsHex64(parts[1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("relying parties line ", line_no,
                       ": expected \"<client id> <64 hex digits> <display name>\""));
    }
    if (auto s = table.AddHashed(Sv(parts[0]), absl::HexStringToBytes(parts[1]),
                                 Sv(absl::StripAsciiWhitespace(parts[2])));
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("relying parties line ", line_no, ": ", s.message()));
    }
  }
  return table;
}

absl::StatusOr<RelyingPartyTable> RelyingPartyTable::FromFile(std::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) {
    return absl::NotFoundError(absl::StrCat("relying parties file ", Av(path), ": cannot open"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str());
}

absl::Status RelyingPartyTable::Add(std::string_view client_id, std::string_view secret,
                                    std::string_view name) {
  return AddHashed(client_id, Sha256(secret), name);
}

absl::Status RelyingPartyTable::AddHashed(std::string_view client_id, std::string secret_sha256,
                                          std::string_view name) {
  if (!IsValidClientId(client_id)) {
    return absl::InvalidArgumentError("client id: 1..64 characters of [A-Za-z0-9._-]");
  }
  if (!IsDisplayText(name, 1, 200)) {
    return absl::InvalidArgumentError("display name: 1..200 characters of UTF-8 text");
  }
  if (!clients_
           .emplace(std::string(client_id),
                    Entry{.secret_sha256 = std::move(secret_sha256), .name = std::string(name)})
           .second) {
    return absl::InvalidArgumentError(absl::StrCat("client id ", Av(client_id), " repeated"));
  }
  return absl::OkStatus();
}

absl::Status RelyingPartyTable::AddRedirectUri(std::string_view client_id, std::string_view uri) {
  auto it = clients_.find(Av(client_id));
  if (it == clients_.end()) {
    return absl::InvalidArgumentError("+redirect_uri: the client is not registered above");
  }
  // https, or http on the loopback (a developer's e-service); no fragment (RFC 6749 §3.1.2).
  const bool https = absl::StartsWith(Av(uri), "https://") && uri.size() > 8;
  const bool local = absl::StartsWith(Av(uri), "http://localhost:") ||
                     absl::StartsWith(Av(uri), "http://127.0.0.1:");
  if ((!https && !local) || uri.size() > 500 || uri.find('#') != std::string_view::npos ||
      !IsDisplayText(uri, 1, 500) || uri.find(' ') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        "+redirect_uri: an https URI without fragment (http only on localhost)");
  }
  it->second.redirect_uris.emplace_back(uri);
  return absl::OkStatus();
}

absl::Status RelyingPartyTable::AllowClientCredentials(std::string_view client_id) {
  auto it = clients_.find(Av(client_id));
  if (it == clients_.end()) {
    return absl::InvalidArgumentError("+client_credentials: the client is not registered above");
  }
  it->second.client_credentials = true;
  return absl::OkStatus();
}

bool RelyingPartyTable::IsRedirectUri(std::string_view client_id, std::string_view uri) const {
  auto it = clients_.find(Av(client_id));
  if (it == clients_.end()) return false;
  for (const std::string& registered : it->second.redirect_uris) {
    if (registered == uri) return true;
  }
  return false;
}

RelyingParty RelyingPartyTable::PartyOf(const std::string& client_id, const Entry& entry) const {
  return RelyingParty{
      .client_id = client_id, .name = entry.name, .client_credentials = entry.client_credentials};
}

std::optional<RelyingParty> RelyingPartyTable::Authenticate(std::string_view client_id,
                                                            std::string_view secret) const {
  static const std::string kNoHash(SHA256_DIGEST_LENGTH, '\xff');
  auto it = clients_.find(Av(client_id));
  const std::string& want = it == clients_.end() ? kNoHash : it->second.secret_sha256;
  const bool match = ConstantTimeEquals(Sha256(secret), want);
  if (it == clients_.end() || !match) return std::nullopt;
  return PartyOf(it->first, it->second);
}

std::optional<RelyingParty> RelyingPartyTable::Find(std::string_view client_id) const {
  auto it = clients_.find(Av(client_id));
  if (it == clients_.end()) return std::nullopt;
  return PartyOf(it->first, it->second);
}

}  // namespace qsign::gateway
