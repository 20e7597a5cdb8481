// The consent service built from the `consent` section (common/daemon/stack.h): the SAD key, the
// PIN pepper, the device CA (lifecycle's when lifecycle is reachable, else its own), push, and
// its clients of identity, signer and lifecycle. Stop() ends the apps' open streams.
#ifndef QSIGN_SERVICES_CONSENT_STACK_H_
#define QSIGN_SERVICES_CONSENT_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::consent {

extern const daemon::StackFactory kStack;

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_STACK_H_
