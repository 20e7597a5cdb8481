// qsign-gateway: the gateway service on its own, as one deployment of it runs in production.
// qsign-gateway --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// gateway section and no other service section.
#include "common/daemon/daemon.h"
#include "services/gateway/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-gateway", {qsign::gateway::kStack});
}
