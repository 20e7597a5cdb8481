// qsign-consent: the consent service on its own, as one deployment of it runs in production.
// qsign-consent --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// consent section and no other service section.
#include "common/daemon/daemon.h"
#include "services/consent/stack.h"

int main(int argc, char** argv) {
  return qsign::daemon::Main(argc, argv, "qsign-consent", {qsign::consent::kStack});
}
