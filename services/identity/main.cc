// qsign-identity: the identity service on its own, as one deployment of it runs in production.
// qsign-identity --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// identity section and no other service section.
#include "common/daemon/daemon.h"
#include "services/identity/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-identity", {qsign::identity::kStack});
}
