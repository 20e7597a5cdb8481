// The CSC API v2 gateway built from the `gateway` section (common/daemon/stack.h): HTTP/JSON in
// front of signer and consent, wherever they run. Stop() closes its HTTP listener, so that its
// calls into this process finish before the services behind it stop.
#ifndef QSIGN_SERVICES_GATEWAY_STACK_H_
#define QSIGN_SERVICES_GATEWAY_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::gateway {

extern const daemon::StackFactory kStack;

// The port the gateway stack listens on (tests bind port 0); 0 for another kind of stack.
int HttpPort(daemon::Stack* stack);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_STACK_H_
