// qsignd: the qsign services named in its config file in one process, on one port (every one of
// them for a laptop, a demo and the tests). qsignd --config=FILE [--check_config].
#include "services/qsignd/daemon.h"

int main(int argc, char** argv) { return qsign::DaemonMain(argc, argv, "qsignd", ""); }
