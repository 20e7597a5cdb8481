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
  unsigned char bytes[16];
  // Without randomness nothing else in the process works either.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
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
