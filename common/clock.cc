#include "common/clock.h"

namespace qsign {

const Clock& RealClock::Get() {
  static const RealClock* const clock = new RealClock();
  return *clock;
}

}  // namespace qsign
