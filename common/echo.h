// Echoing a caller's input back in a status message: at most a short prefix, printable, so that a
// 20,000-character value cannot blow the client's metadata limit (grpc-message is a header) nor
// smuggle control characters into logs and terminals. Every message that repeats what a request
// said goes through Echo; ToGrpcStatus bounds whole messages as a backstop (kMaxStatusMessage).
#ifndef QSIGN_COMMON_ECHO_H_
#define QSIGN_COMMON_ECHO_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace qsign {

// Bytes of input an Echo shows at most.
inline constexpr size_t kMaxEcho = 40;
// Bytes of a status message that cross the gRPC edge at most.
inline constexpr size_t kMaxStatusMessage = 1024;

// `input` as shown to a caller: at most kMaxEcho bytes (cut at a UTF-8 character boundary),
// bytes outside printable ASCII and valid UTF-8 as '?', and "…(<n> bytes)" appended when cut.
std::string Echo(std::string_view input);

// `message` cut to at most `max_bytes` (at a UTF-8 character boundary) with "…" appended when
// cut; unchanged when it fits.
std::string BoundMessage(std::string_view message, size_t max_bytes = kMaxStatusMessage);

}  // namespace qsign

#endif  // QSIGN_COMMON_ECHO_H_
