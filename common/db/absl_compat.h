// Debian's libabsl is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is its
// own type and absl::StrCat, absl::SimpleAtoi, absl::Status(...) do not accept std::string_view.
// Our APIs take std::string_view; these convert at the absl boundary (a no-op where the two types
// are the same).
#ifndef QSIGN_COMMON_DB_ABSL_COMPAT_H_
#define QSIGN_COMMON_DB_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace qsign::db::internal {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view StdSv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace qsign::db::internal

#endif  // QSIGN_COMMON_DB_ABSL_COMPAT_H_
