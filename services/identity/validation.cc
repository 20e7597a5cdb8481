#include "services/identity/validation.h"

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace qsign::identity {
namespace {

absl::Status Invalid(std::string_view field, std::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(Av(field), ": ", Av(rule)));
}

int Digit(char c) { return c - '0'; }

// Strict UTF-8 decoding: no overlong forms, no surrogates, nothing above U+10FFFF.
std::optional<std::vector<char32_t>> DecodeUtf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<uint8_t>(s[i]);
    int len;
    char32_t cp;
    if (b0 < 0x80) {
      len = 1;
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    } else {
      return std::nullopt;
    }
    if (i + len > s.size()) return std::nullopt;
    for (int k = 1; k < len; ++k) {
      auto b = static_cast<uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr char32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return std::nullopt;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool IsNameLetter(char32_t c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return true;
  // Latin-1 letters (without the multiplication and division signs).
  if (c >= 0xC0 && c <= 0xFF) return c != 0xD7 && c != 0xF7;
  // Latin Extended-A and -B (č, ć, đ, š, ž, ...).
  if (c >= 0x100 && c <= 0x24F) return true;
  // Cyrillic letters (the block minus its signs and combining marks U+0482..U+0489).
  if (c >= 0x400 && c <= 0x4FF) return c < 0x482 || c > 0x489;
  // Latin Extended Additional.
  if (c >= 0x1E00 && c <= 0x1EFF) return true;
  return false;
}

bool IsNameSeparator(char32_t c) {
  return c == ' ' || c == '-' || c == '\'' || c == 0x2019 /* ’ */ || c == '.';
}

bool IsLocalPartChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  static constexpr std::string_view kSpecials = "!#$%&'*+/=?^_`{|}~.-";
  return kSpecials.find(c) != std::string_view::npos;
}

}  // namespace

int NationalIdCheckDigit(std::string_view d) {
  static constexpr int kWeights[6] = {7, 6, 5, 4, 3, 2};
  int sum = 0;
  for (int i = 0; i < 6; ++i) sum += kWeights[i] * (Digit(d[i]) + Digit(d[i + 6]));
  int k = 11 - sum % 11;
  if (k == 11) return 0;
  if (k == 10) return -1;
  return k;
}

absl::Status ValidateNationalId(std::string_view id, absl::CivilDay today) {
  constexpr std::string_view kField = "national_id";
  if (id.empty()) return Invalid(kField, "required");
  if (id.size() != 13) {
    return Invalid(kField,
                   absl::StrCat("exactly 13 digits required, got ", id.size(), " characters"));
  }
  for (char c : id) {
    if (c < '0' || c > '9') return Invalid(kField, "digits only (13 digits, no separators)");
  }
  const int day = Digit(id[0]) * 10 + Digit(id[1]);
  const int month = Digit(id[2]) * 10 + Digit(id[3]);
  const int yyy = Digit(id[4]) * 100 + Digit(id[5]) * 10 + Digit(id[6]);
  int year;
  if (id[4] == '9') {
    year = 1000 + yyy;
  } else if (id[4] == '0') {
    year = 2000 + yyy;
  } else {
    return Invalid(kField,
                   "digits 5-7 are the year of birth: 9xx for the 1900s or 0xx for the 2000s");
  }
  if (month < 1 || month > 12) {
    return Invalid(kField, "digits 3-4 are the month of birth: 01..12");
  }
  const absl::CivilDay birth(year, month, day);
  if (day < 1 || birth.day() != day || birth.month() != month) {
    return Invalid(
        kField, absl::StrCat("digits 1-7 are not a real date of birth (", Av(id.substr(0, 2)), ".",
                             Av(id.substr(2, 2)), ".", year, ")"));
  }
  if (birth > today) return Invalid(kField, "the date of birth (digits 1-7) is in the future");
  const int check = NationalIdCheckDigit(id.substr(0, 12));
  if (check < 0) {
    return Invalid(kField, "not a valid number: the mod-11 check of the first 12 digits gives 10");
  }
  if (Digit(id[12]) != check) {
    return Invalid(kField, "the check digit (13th digit, mod 11) does not match");
  }
  return absl::OkStatus();
}

absl::Status ValidateEmail(std::string_view field, std::string_view email) {
  if (email.empty()) return Invalid(field, "required");
  if (email.size() > 254) return Invalid(field, "an e-mail address has at most 254 characters");
  const size_t at = email.find('@');
  if (at == std::string_view::npos || email.find('@', at + 1) != std::string_view::npos) {
    return Invalid(field, "an e-mail address has exactly one '@'");
  }
  const std::string_view local = email.substr(0, at);
  const std::string_view domain = email.substr(at + 1);
  if (local.empty() || local.size() > 64) {
    return Invalid(field, "the part before '@' has 1..64 characters");
  }
  for (char c : local) {
    if (!IsLocalPartChar(c)) {
      return Invalid(field,
                     "the part before '@' allows letters, digits and !#$%&'*+/=?^_`{|}~.- only");
    }
  }
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
    return Invalid(field, "the part before '@' has no leading, trailing or doubled '.'");
  }
  std::vector<absl::string_view> labels = absl::StrSplit(Av(domain), '.');
  if (labels.size() < 2) {
    return Invalid(field, "the domain needs at least two labels, e.g. example.rs");
  }
  for (absl::string_view label : labels) {
    if (label.empty() || label.size() > 63) {
      return Invalid(field, "each domain label has 1..63 characters");
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
        return Invalid(field,
                       "the domain allows letters, digits, '-' and '.' only (IDN in punycode)");
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return Invalid(field, "a domain label does not begin or end with '-'");
    }
  }
  const absl::string_view tld = labels.back();
  bool alphabetic = tld.size() >= 2;
  for (char c : tld) alphabetic = alphabetic && absl::ascii_isalpha(static_cast<unsigned char>(c));
  if (!alphabetic && !absl::StartsWithIgnoreCase(tld, "xn--")) {
    return Invalid(field, "the top-level domain is 2 or more letters");
  }
  return absl::OkStatus();
}

std::string NormalizeUsername(std::string_view username) {
  return absl::AsciiStrToLower(Av(username));
}

absl::Status ValidatePersonName(std::string_view field, std::string_view name) {
  if (name.empty()) return Invalid(field, "required");
  const auto chars = DecodeUtf8(name);
  if (!chars.has_value()) return Invalid(field, "not valid UTF-8");
  if (static_cast<int>(chars->size()) > kMaxNameChars) {
    return Invalid(field, absl::StrCat("at most ", kMaxNameChars, " characters"));
  }
  for (char32_t c : *chars) {
    if (!IsNameLetter(c) && !IsNameSeparator(c)) {
      return Invalid(field, "letters (Latin or Cyrillic) with spaces, '-', ''' and '.' only");
    }
  }
  if (!IsNameLetter(chars->front())) return Invalid(field, "begins with a letter");
  if (!IsNameLetter(chars->back()) && chars->back() != '.') {
    return Invalid(field, "ends with a letter or '.'");
  }
  for (size_t i = 1; i < chars->size(); ++i) {
    char32_t prev = (*chars)[i - 1], cur = (*chars)[i];
    // "J. R." and "Ana-Marija" are names; "Ana  Marija" and "Ana--Marija" are typing errors.
    if (IsNameSeparator(prev) && IsNameSeparator(cur) && !(prev == '.' && cur == ' ')) {
      return Invalid(field, "no two spaces or punctuation marks in a row");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCommonNameLength(std::string_view given_name, std::string_view surname) {
  if (Utf8Length(given_name) + 1 + Utf8Length(surname) > 64) {
    return absl::InvalidArgumentError(
        "given_name, surname: \"<given_name> <surname>\" is at most 64 characters (the "
        "certificate's common name)");
  }
  return absl::OkStatus();
}

absl::Status ValidatePersonData(std::string_view given_name, std::string_view surname,
                                std::string_view national_id, absl::CivilDay today) {
  if (auto s = ValidatePersonName("given_name", given_name); !s.ok()) return s;
  if (auto s = ValidatePersonName("surname", surname); !s.ok()) return s;
  if (auto s = ValidateCommonNameLength(given_name, surname); !s.ok()) return s;
  return ValidateNationalId(national_id, today);
}

bool IsValidUtf8(std::string_view text) { return DecodeUtf8(text).has_value(); }

absl::Status ValidateFreeText(std::string_view field, std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) return Invalid(field, absl::StrCat("at most ", max_bytes, " bytes"));
  const auto chars = DecodeUtf8(text);
  if (!chars.has_value()) return Invalid(field, "not valid UTF-8");
  for (char32_t c : *chars) {
    if ((c < 0x20 && c != '\t') || (c >= 0x7F && c < 0xA0)) {
      return Invalid(field, "no control characters");
    }
  }
  return absl::OkStatus();
}

int Utf8Length(std::string_view text) {
  int n = 0;
  for (char c : text) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace qsign::identity
