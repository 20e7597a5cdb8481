// qsign-lifecycle: the lifecycle service on its own, as one deployment of it runs in production.
// qsign-lifecycle --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// lifecycle section and no other service section.
#include "common/daemon/daemon.h"
#include "services/lifecycle/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-lifecycle", {qsign::lifecycle::kStack});
}
