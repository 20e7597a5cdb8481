// qsignd: the qsign services named in its config file in one process, on one port (every one of
// them for a laptop, a demo and the tests). qsignd --config=FILE [--check_config].
// The composition root: the only file that knows every service's stack.
#include "common/daemon/daemon.h"
#include "services/consent/stack.h"
#include "services/gateway/stack.h"
#include "services/identity/stack.h"
#include "services/lifecycle/stack.h"
#include "services/signer/stack.h"

int main(int argc, char** argv) {
  // Build order; Stop() runs in reverse: the gateway drains before consent's streams end.
  return qsign::daemon::Main(
      argc, argv, "qsignd",
      {qsign::signer::kStack, qsign::consent::kStack, qsign::identity::kStack,
       qsign::lifecycle::kStack, qsign::gateway::kStack});
}
