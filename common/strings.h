// Debian's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0: absl::string_view is its own
// class, and absl::StrCat, absl::Status(...) and friends do not take a std::string_view. qsign's
// APIs use std::string_view; Av() bridges to Abseil without copying, Sv() bridges back.
#ifndef QSIGN_COMMON_STRINGS_H_
#define QSIGN_COMMON_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace qsign {

inline absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view Sv(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace qsign

#endif  // QSIGN_COMMON_STRINGS_H_
