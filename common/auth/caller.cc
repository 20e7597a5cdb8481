#include "common/auth/caller.h"

#include "absl/strings/str_cat.h"
#include "common/client_address.h"

namespace qsign::auth {

std::string ActorName(const Caller& caller) {
  switch (caller.kind) {
    case CallerKind::kAnonymous:
      return "anonymous";
    case CallerKind::kUser:
      return absl::StrCat("account:", caller.id);
    case CallerKind::kOperator:
      return absl::StrCat("operator:", caller.id);
    case CallerKind::kService:
      return absl::StrCat("service:", caller.id);
  }
  return "unknown";
}

std::string AddressOf(const ClientInfo& client) {
  if (client.client_address.empty()) return client.peer;
  if (client.peer.empty()) return client.client_address;
  return absl::StrCat(client.client_address, " via ", client.peer);
}

std::string KeyAddress(const ClientInfo& client) {
  return client.network_address.empty() ? PeerAddress(client.peer) : client.network_address;
}

}  // namespace qsign::auth
