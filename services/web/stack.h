// The web front ends built from the `web` section (common/daemon/stack.h): portal, consent app
// and registration office on their own HTTP(S) listener, calling identity, consent, lifecycle
// and signer wherever they run. Stop() closes the listener first, so that its calls into this
// process finish before the services behind it stop.
#ifndef QSIGN_SERVICES_WEB_STACK_H_
#define QSIGN_SERVICES_WEB_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::web {

extern const daemon::StackFactory kStack;

// The port the web stack listens on (tests bind port 0); 0 for another kind of stack.
int HttpPort(daemon::Stack* stack);

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_STACK_H_
