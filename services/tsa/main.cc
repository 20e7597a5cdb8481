// qsign-tsa: the timestamp authority on its own, as one deployment of it runs in production.
// qsign-tsa --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// tsa section and no other service section.
#include "common/daemon/daemon.h"
#include "services/tsa/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-tsa", {qsign::tsa::kStack});
}
