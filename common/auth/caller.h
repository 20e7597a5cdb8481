// Who is calling a qsign service, as its gRPC edge authenticated them
// (common/auth/authenticator.h), and where the call came from, for the audit trail. One definition
// for every service.
#ifndef QSIGN_COMMON_AUTH_CALLER_H_
#define QSIGN_COMMON_AUTH_CALLER_H_

#include <string>

#include "common/auth/session_token.h"

namespace qsign::auth {

enum class CallerKind { kAnonymous, kUser, kOperator, kService };

struct Caller {
  CallerKind kind = CallerKind::kAnonymous;
  // The account id of a user; the operator or service client id otherwise.
  std::string id;
  // kUser only: the verified claims of the session token.
  SessionClaims session;
  // The gRPC peer, for services whose methods take no ClientInfo.
  std::string peer;
};

// Where a call came from, for the audit trail.
struct ClientInfo {
  // ClientContext.client_address: the end user's address as the front end saw it.
  std::string client_address;
  std::string user_agent;
  // The gRPC peer.
  std::string peer;
  // The end user's network address as this service resolved it (common/client_address.h: the
  // peer's, or a trusted proxy's header): what per-address rate limits key on. Empty when the
  // edge did not resolve it; KeyAddress then falls back to the peer's address.
  std::string network_address;
};

// The address per-address rate limits key on: network_address, else the peer's address.
std::string KeyAddress(const ClientInfo& client);

// "anonymous", "account:<id>", "operator:<id>" or "service:<id>": the audit record's actor.
std::string ActorName(const Caller& caller);

// The client address, "<client address> via <peer>" when both are known.
std::string AddressOf(const ClientInfo& client);

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_CALLER_H_
