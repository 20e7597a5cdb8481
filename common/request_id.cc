#include "common/request_id.h"

#include <openssl/rand.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"

namespace qsign::request_id {
namespace {

// Not owned: points into the innermost live ScopedRequestId of this thread.
thread_local const std::string* current = nullptr;

}  // namespace

bool IsWellFormed(std::string_view id) {
  if (id.empty() || id.size() > kMaxLength) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string Generate() {
  // Random bytes for 256 ids at a time: one RAND_bytes call (a DRBG lock and a provider
  // look-up in OpenSSL 3) per 256 calls instead of per call; each id still takes 16 bytes no
  // other id has used.
  constexpr size_t kIdBytes = 16;
  thread_local unsigned char buffer[256 * kIdBytes];
  thread_local size_t used = sizeof(buffer);
  if (used == sizeof(buffer)) {
    // Without randomness nothing else in the process works either.
    if (RAND_bytes(buffer, sizeof(buffer)) != 1) std::abort();
    used = 0;
  }
  const char* id = reinterpret_cast<const char*>(buffer + used);
  used += kIdBytes;
  return absl::BytesToHexString(absl::string_view(id, kIdBytes));
}

std::string AcceptOrGenerate(std::string_view incoming) {
  return IsWellFormed(incoming) ? std::string(incoming) : Generate();
}

std::string_view Current() { return current == nullptr ? std::string_view() : *current; }

ScopedRequestId::ScopedRequestId(std::string id) : id_(std::move(id)), previous_(current) {
  current = &id_;
}

ScopedRequestId::~ScopedRequestId() { current = previous_; }

}  // namespace qsign::request_id
