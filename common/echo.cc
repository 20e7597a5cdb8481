#include "common/echo.h"

#include "absl/strings/str_cat.h"

namespace qsign {
namespace {

// Length of the UTF-8 sequence starting at s[i] (1..4), or 0 when it is not a valid one.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  }
  return n;
}

// The longest prefix of `s` of at most `max_bytes` that does not split a UTF-8 sequence.
size_t CutAt(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s.size();
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

}  // namespace

std::string Echo(std::string_view input) {
  std::string out;
  const size_t shown = CutAt(input, kMaxEcho);
  for (size_t i = 0; i < shown;) {
    const size_t n = Utf8Length(input, i);
    const auto c = static_cast<unsigned char>(input[i]);
    if (n == 0 || i + n > shown || (n == 1 && (c < 0x20 || c == 0x7F))) {
      out.push_back('?');
      ++i;
      continue;
    }
    out.append(input.substr(i, n));
    i += n;
  }
  if (shown < input.size()) absl::StrAppend(&out, "…(", input.size(), " bytes)");
  return out;
}

std::string BoundMessage(std::string_view message, size_t max_bytes) {
  if (message.size() <= max_bytes) return std::string(message);
  return absl::StrCat(absl::string_view(message.data(), CutAt(message, max_bytes)), "…");
}

}  // namespace qsign
