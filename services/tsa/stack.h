// The timestamp authority built from the `tsa` section (common/daemon/stack.h): its key in the
// HSM (made by create_missing_keys), its schema, its certificate (stored, or asked of lifecycle
// in the background until it is issued), qsign.v1.Tsa on the process's listener and the public
// HTTP listener at tsa.http_listen.
#ifndef QSIGN_SERVICES_TSA_STACK_H_
#define QSIGN_SERVICES_TSA_STACK_H_

#include "common/daemon/stack.h"

namespace qsign::tsa {

extern const daemon::StackFactory kStack;

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_STACK_H_
