// The lifecycle service built from the `lifecycle` section (common/daemon/stack.h): the CA
// hierarchy in the HSM (created on the first start with create_missing_keys), its clients of
// signer, identity and consent, the OCSP/CRL listener, and the scheduler (started by Start()).
#ifndef QSIGN_SERVICES_LIFECYCLE_STACK_H_
#define QSIGN_SERVICES_LIFECYCLE_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::lifecycle {

extern const daemon::StackFactory kStack;

// The port of the OCSP/CRL listener of a lifecycle stack (tests and benchmarks bind port 0); 0
// for another kind of stack.
int HttpPort(daemon::Stack* stack);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_STACK_H_
