// The consent statement (consent/statement.h) as the consent app and the server decode it: any
// bytes either fail to decode or decode to a statement whose encoding is exactly those bytes
// (one value, one encoding).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "absl/strings/match.h"
#include "consent/statement.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto statement = qsign::consent::DecodeStatement(bytes);
  if (!statement.ok()) {
    if (!absl::StartsWith(statement.status().message(), "statement: ")) std::abort();
    return 0;
  }
  if (qsign::consent::EncodeStatement(*statement) != bytes) std::abort();  // Not canonical.
  // What the app shows of it.
  if (statement->kind == qsign::consent::RequestKind::kLogin) {
    (void)qsign::consent::LoginDisplayText(statement->login);
  } else {
    (void)qsign::consent::SignDisplayText(statement->sign);
  }
  return 0;
}
