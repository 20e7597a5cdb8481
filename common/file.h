// Whole files read at start-up: configs, certificates, credential tables. Secrets go through
// ReadSecretFile (common/secret.h) instead, which wipes what it read.
#ifndef QSIGN_COMMON_FILE_H_
#define QSIGN_COMMON_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsign {

// The bytes of `path`. NOT_FOUND or PERMISSION_DENIED read "<path>: cannot open (<reason>)".
absl::StatusOr<std::string> ReadFileToString(std::string_view path);

}  // namespace qsign

#endif  // QSIGN_COMMON_FILE_H_
