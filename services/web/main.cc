// qsign-web: the web front ends on their own, as one deployment of them runs in production.
// qsign-web --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// web section and no other service section (identity, consent, lifecycle, signer at peers.*).
#include "common/daemon/daemon.h"
#include "services/web/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-web", {qsign::web::kStack});
}
