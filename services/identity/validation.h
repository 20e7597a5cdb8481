// Field rules of the identity service. Each check answers OK or INVALID_ARGUMENT whose message
// starts with the field name and states the rule, e.g. "national_id: check digit does not match".
#ifndef QSIGN_SERVICES_IDENTITY_VALIDATION_H_
#define QSIGN_SERVICES_IDENTITY_VALIDATION_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"

namespace qsign::identity {

// Serbian national identification number (JMBG), DDMMYYYRRBBBK: exactly 13 ASCII digits; DDMMYYY
// a real date of birth (YYY 9xx: 1900s, 0xx: 2000s) not after `today`; K the mod-11 check digit
// K = 11 - ((7(a+g) + 6(b+h) + 5(c+i) + 4(d+j) + 3(e+k) + 2(f+l)) mod 11), 11 read as 0, and
// no number whose formula gives 10 is valid.
absl::Status ValidateNationalId(std::string_view national_id, absl::CivilDay today);

// The check digit for the first 12 digits, or -1 when none exists (the formula gives 10).
// `first12` must be 12 ASCII digits.
int NationalIdCheckDigit(std::string_view first12);

// An ASCII e-mail address: local@domain, at most 254 characters; local part 1..64 characters of
// letters, digits and !#$%&'*+/=?^_`{|}~.- without a leading, trailing or doubled dot; domain of
// at least two dot-separated labels of 1..63 letters, digits and hyphens (no hyphen at either
// end), the last one alphabetic (or "xn--" punycode). Internationalised addresses must be given
// in punycode.
absl::Status ValidateEmail(std::string_view field, std::string_view email);

// ASCII lower case: usernames are stored and compared lower-cased.
std::string NormalizeUsername(std::string_view username);

inline constexpr int kMaxNameChars = 64;

// A given name or surname: valid UTF-8, 1..kMaxNameChars characters, letters (Latin, including
// its accented and extended forms, or Cyrillic), with single spaces, hyphens, apostrophes and
// periods between them; begins with a letter, ends with a letter or a period.
absl::Status ValidatePersonName(std::string_view field, std::string_view name);

// Both names together, as the certificate's CN "<given_name> <surname>", fit in 64 characters.
absl::Status ValidateCommonNameLength(std::string_view given_name, std::string_view surname);

// What a person states at registration (and an officer may correct before proofing): both names
// (ValidatePersonName, ValidateCommonNameLength) and the national id (ValidateNationalId).
absl::Status ValidatePersonData(std::string_view given_name, std::string_view surname,
                                std::string_view national_id, absl::CivilDay today);

// Number of Unicode code points in valid UTF-8 text.
int Utf8Length(std::string_view text);

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// Free text for the audit trail: valid UTF-8, at most `max_bytes`, no control characters other
// than tab.
absl::Status ValidateFreeText(std::string_view field, std::string_view text, size_t max_bytes);

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_VALIDATION_H_
