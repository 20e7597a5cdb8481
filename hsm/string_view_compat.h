// Debian's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW 0: absl::string_view is its own
// class and std::string_view does not convert to it. AbslView bridges the two without copying
// (and is the identity where absl::string_view is std::string_view).
#ifndef QSIGN_HSM_STRING_VIEW_COMPAT_H_
#define QSIGN_HSM_STRING_VIEW_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace qsign::hsm {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_STRING_VIEW_COMPAT_H_
