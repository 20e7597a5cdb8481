// The identity service built from the `identity` section (common/daemon/stack.h): its
// session-token keys checked in the HSM, its schema migrated, its client of consent (logins).
#ifndef QSIGN_SERVICES_IDENTITY_STACK_H_
#define QSIGN_SERVICES_IDENTITY_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::identity {

extern const daemon::StackFactory kStack;

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_STACK_H_
