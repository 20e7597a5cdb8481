// The signer service built from the `signer` section (common/daemon/stack.h): its SAD keys
// checked in the HSM, its schema migrated, the administrative RPCs limited to services_file.
#ifndef QSIGN_SERVICES_SIGNER_STACK_H_
#define QSIGN_SERVICES_SIGNER_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::signer {

extern const daemon::StackFactory kStack;

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_STACK_H_
