// Request ids: one id per call, carried through every log line written while handling it and
// every call made on its behalf ("x-request-id" in gRPC metadata, X-Request-Id over HTTP).
// The id is chosen by a caller outside our control, so it is only accepted when well-formed and
// is never trusted for anything but correlating logs.
#ifndef QSIGN_COMMON_REQUEST_ID_H_
#define QSIGN_COMMON_REQUEST_ID_H_

#include <string>
#include <string_view>

namespace qsign::request_id {

// gRPC metadata key (lower case, as gRPC requires); HTTP header names are case-insensitive.
inline constexpr char kMetadataKey[] = "x-request-id";
inline constexpr char kHttpHeader[] = "X-Request-Id";
inline constexpr size_t kMaxLength = 64;

// 1..64 characters of [A-Za-z0-9._-].
bool IsWellFormed(std::string_view id);
// 128 random bits (OS CSPRNG) as 32 lower-case hex digits.
std::string Generate();
// `incoming` when well-formed, else a fresh Generate().
std::string AcceptOrGenerate(std::string_view incoming);

// The id of the call this thread is handling; empty outside any.
std::string_view Current();

// Makes `id` the current id of this thread until destroyed, then restores the one before. Not
// movable: it must be destroyed on the thread that made it.
class ScopedRequestId {
 public:
  explicit ScopedRequestId(std::string id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string id_;
  const std::string* previous_;  // Not owned: the enclosing scope's id, or nullptr.
};

}  // namespace qsign::request_id

#endif  // QSIGN_COMMON_REQUEST_ID_H_
