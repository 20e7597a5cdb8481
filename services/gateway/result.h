// What a handler of the gateway answers, before Gateway::Handle writes it as JSON; internal to
// the gateway's .cc files (gateway.cc and the *_handlers.cc).
#ifndef QSIGN_SERVICES_GATEWAY_RESULT_H_
#define QSIGN_SERVICES_GATEWAY_RESULT_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/gateway/gateway.h"
#include "services/gateway/params.h"

namespace qsign::gateway {

// An authenticated call: the relying party, what its token says, and the body as a JSON object.
struct Gateway::Call {
  RelyingParty client;
  VerifiedToken token;
  Json body;
  // For the methods on one credential (BeginOnCredential): the body's credentialID, and the
  // credential's info when it was fetched.
  std::string credential_id;
  std::optional<qsign::v1::CredentialInfo> credential;
};

struct Gateway::Result {
  int http_status = 200;
  Json body;
  std::vector<std::pair<std::string, std::string>> headers;
};

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_RESULT_H_
