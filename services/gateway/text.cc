#include "services/gateway/text.h"

#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/secret.h"
#include "common/strings.h"

namespace qsign::gateway {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool OnlyAlphabet(std::string_view s, bool url_safe) {
  size_t end = s.size();
  while (end > 0 && s[end - 1] == '=') --end;
  if (s.size() - end > 2) return false;
  for (size_t i = 0; i < end; ++i) {
    const char c = s[i];
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    if (url_safe ? (c == '-' || c == '_') : (c == '+' || c == '/')) continue;
    return false;
  }
  return true;
}

}  // namespace

bool IsDisplayText(std::string_view s, int min_chars, int max_chars) {
  int chars = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xe  ? 3
                       : (c >> 3) == 0x1e ? 4
                                          : 0;
    if (len == 0 || i + len > s.size()) return false;
    if (len == 1 && (c < 0x20 || c == 0x7f)) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
    ++chars;
  }
  return chars >= min_chars && chars <= max_chars;
}

std::optional<std::string> DecodeBase64(std::string_view s) {
  std::string out;
  if (OnlyAlphabet(s, /*url_safe=*/false) && absl::Base64Unescape(Av(s), &out)) return out;
  if (OnlyAlphabet(s, /*url_safe=*/true) && absl::WebSafeBase64Unescape(Av(s), &out)) return out;
  return std::nullopt;
}

std::string EncodeBase64(std::string_view bytes) { return absl::Base64Escape(Av(bytes)); }

std::string EncodeBase64Url(std::string_view bytes) { return absl::WebSafeBase64Escape(Av(bytes)); }

std::optional<std::string> DecodeBase64Url(std::string_view s) {
  std::string out;
  if (!OnlyAlphabet(s, /*url_safe=*/true) || !absl::WebSafeBase64Unescape(Av(s), &out)) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      const int hi = i + 1 < s.size() ? HexValue(s[i + 1]) : -1;
      const int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> ParseFormUrlEncoded(
    std::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view pair : absl::StrSplit(Av(body), '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    auto name = PercentDecode(Sv(pair.substr(0, eq)));
    auto value = PercentDecode(eq == absl::string_view::npos ? "" : Sv(pair.substr(eq + 1)));
    if (!name || !value) return std::nullopt;
    out.emplace_back(*std::move(name), *std::move(value));
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

namespace {

bool IsUnreserved(std::string_view s) {
  for (unsigned char c : s) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_' && c != '~') return false;
  }
  return true;
}

}  // namespace

std::optional<std::string_view> ConsentLanguage(std::string_view lang) {
  if (lang.empty()) return "sr-Cyrl";
  if (lang.size() > 35) return std::nullopt;
  std::vector<absl::string_view> subtags = absl::StrSplit(Av(lang), '-');
  for (size_t i = 0; i < subtags.size(); ++i) {
    const absl::string_view t = subtags[i];
    if (t.empty() || t.size() > 8) return std::nullopt;
    for (char c : t) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
          (i == 0 && !absl::ascii_isalpha(static_cast<unsigned char>(c)))) {
        return std::nullopt;
      }
    }
  }
  if (subtags[0].size() < 2) return std::nullopt;
  if (absl::EqualsIgnoreCase(subtags[0], "en")) return "en";
  if (absl::EqualsIgnoreCase(subtags[0], "sr")) {
    for (absl::string_view t : subtags) {
      if (absl::EqualsIgnoreCase(t, "Latn")) return "sr-Latn";
    }
  }
  return "sr-Cyrl";
}

bool IsPkceChallenge(std::string_view challenge) {
  return challenge.size() == 43 && OnlyAlphabet(challenge, /*url_safe=*/true);
}

bool PkceMatches(std::string_view verifier, std::string_view challenge) {
  if (verifier.size() < 43 || verifier.size() > 128 || !IsUnreserved(verifier)) return false;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), md);
  const std::string want =
      EncodeBase64Url(std::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
  return ConstantTimeEquals(want, challenge);
}

}  // namespace qsign::gateway
