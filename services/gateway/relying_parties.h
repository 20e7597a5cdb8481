// The relying parties (OAuth 2.0 clients) registered at the CSC gateway. Each has a client id, a
// display name that the user sees in the consent app ("who asks for the signature"), and a
// client secret of which the gateway keeps only SHA-256. Secrets are high-entropy random strings
// made by the operator (32 random bytes, hex), so a plain SHA-256 suffices: there is nothing to
// guess that a slow hash would protect. Compared in constant time.
#ifndef QSIGN_SERVICES_GATEWAY_RELYING_PARTIES_H_
#define QSIGN_SERVICES_GATEWAY_RELYING_PARTIES_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace qsign::gateway {

struct RelyingParty {
  std::string client_id;
  // Shown to the user in the consent app, e.g. "e-Uprava (Office for IT and eGovernment)".
  std::string name;
  // The operator allowed the client credentials grant (the client names users by userID);
  // without it the client gets tokens only from a user's sign-in (authorization code + PKCE).
  bool client_credentials = false;
};

// Immutable once built; thread-safe to read.
class RelyingPartyTable {
 public:
  // Lines "<client id> <64 hex digits: SHA-256 of the secret> <display name>"; blank lines and
  // '#' comments are skipped. Client ids are 1..64 of [A-Za-z0-9._-], names 1..200 characters of
  // UTF-8 text. A client's options follow it on lines of their own:
  //   +redirect_uri <client id> <https URI>   a redirect URI for oauth2/authorize (exact match;
  //                                           http only for localhost); as many as needed
  //   +client_credentials <client id>         the operator allows the client credentials grant
  // INVALID_ARGUMENT naming the line number otherwise (never its content).
  static absl::StatusOr<RelyingPartyTable> Parse(std::string_view text);
  static absl::StatusOr<RelyingPartyTable> FromFile(std::string_view path);

  // Registers a client with the hash of `secret` (tests and provisioning).
  absl::Status Add(std::string_view client_id, std::string_view secret, std::string_view name);
  // The options of a registered client (as the +lines of the file).
  absl::Status AddRedirectUri(std::string_view client_id, std::string_view uri);
  absl::Status AllowClientCredentials(std::string_view client_id);

  // `uri` is one of the client's registered redirect URIs, compared exactly.
  bool IsRedirectUri(std::string_view client_id, std::string_view uri) const;

  // The client when `client_id` is known and SHA-256(secret) matches; an unknown id costs the
  // same as a known one.
  std::optional<RelyingParty> Authenticate(std::string_view client_id,
                                           std::string_view secret) const;
  // The client by id (access tokens name it; a client removed from the file loses its tokens).
  std::optional<RelyingParty> Find(std::string_view client_id) const;

  size_t size() const { return clients_.size(); }

 private:
  struct Entry {
    std::string secret_sha256;  // 32 bytes.
    std::string name;
    bool client_credentials = false;
    std::vector<std::string> redirect_uris;
  };
  RelyingParty PartyOf(const std::string& client_id, const Entry& entry) const;
  absl::Status AddHashed(std::string_view client_id, std::string secret_sha256,
                         std::string_view name);
  absl::flat_hash_map<std::string, Entry> clients_;
};

// 1..64 characters of [A-Za-z0-9._-].
bool IsValidClientId(std::string_view client_id);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_RELYING_PARTIES_H_
