#include "common/file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign {

absl::StatusOr<std::string> ReadFileToString(std::string_view path) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) {
    const int err = errno;
    std::string msg = absl::StrCat(Av(path), ": cannot open (", std::strerror(err), ")");
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::NotFoundError(msg);
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(Av(path), ": read failed"));
  return content.str();
}

}  // namespace qsign
