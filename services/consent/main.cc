// qsign-consent: the consent service on its own, as one deployment of it runs in production.
// qsign-consent --config=FILE [--check_config]; FILE (proto/qsign/config/v1/config.proto) has the
// consent section and no other service section.
#include "services/qsignd/daemon.h"

int main(int argc, char** argv) { return qsign::DaemonMain(argc, argv, "qsign-consent", "consent"); }
