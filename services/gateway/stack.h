// The CSC API v2 gateway built from the `gateway` section (common/daemon/stack.h): HTTP/JSON in
// front of signer and consent, wherever they run. Stop() closes its HTTP listener, so that its
// calls into this process finish before the services behind it stop.
#ifndef QSIGN_SERVICES_GATEWAY_STACK_H_
#define QSIGN_SERVICES_GATEWAY_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::gateway {

extern const daemon::StackFactory kStack;

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_STACK_H_
