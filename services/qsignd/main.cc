// qsignd: the qsign services named in its config file in one process, on one port (every one of
// them for a laptop, a demo and the tests). qsignd --config=FILE [--check_config].
// The composition root: the only file that knows every service's stack.
#include "common/daemon/daemon.h"
#include "services/consent/stack.h"
#include "services/gateway/stack.h"
#include "services/identity/stack.h"
#include "services/lifecycle/stack.h"
#include "services/signer/stack.h"
#include "services/tsa/stack.h"
#include "services/web/stack.h"

int main(int argc, char** argv) {
  // Build order; Stop() runs in reverse: the front ends (web, gateway) drain before consent's
  // streams end. Consent before the signer: on a laptop's first start consent makes the SAD key
  // and writes consent.sad_public_key_file, which the signer reads as its pinned signer.sad_keys.
  return qsign::daemon::Main(
      argc, argv, "qsignd",
      {qsign::consent::kStack, qsign::signer::kStack, qsign::identity::kStack,
       qsign::lifecycle::kStack, qsign::tsa::kStack, qsign::gateway::kStack, qsign::web::kStack});
}
