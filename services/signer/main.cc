// qsign-signer: the signer service on its own, as one deployment of it runs in production.
// qsign-signer --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// signer section and no other service section.
#include "common/daemon/daemon.h"
#include "services/signer/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-signer", {qsign::signer::kStack});
}
