// Small text codecs of the CSC gateway: UTF-8 display text, the two base64 alphabets clients use,
// and application/x-www-form-urlencoded bodies (OAuth 2.0 token requests).
#ifndef QSIGN_SERVICES_GATEWAY_TEXT_H_
#define QSIGN_SERVICES_GATEWAY_TEXT_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qsign::gateway {

// True when `s` is valid UTF-8 without control characters and has min..max characters.
bool IsDisplayText(std::string_view s, int min_chars, int max_chars);

// Standard base64 (RFC 4648 §4), padding optional; the URL-safe alphabet (§5) is accepted too,
// since OAuth-minded clients send it. nullopt when `s` is neither.
std::optional<std::string> DecodeBase64(std::string_view s);
// Standard base64 with padding.
std::string EncodeBase64(std::string_view bytes);
// URL-safe base64 without padding (tokens and handles).
std::string EncodeBase64Url(std::string_view bytes);
std::optional<std::string> DecodeBase64Url(std::string_view s);

// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}} ('+' is a space). nullopt on a malformed
// percent-escape; pairs keep their order and repetitions (the caller refuses repeats).
std::optional<std::vector<std::pair<std::string, std::string>>> ParseFormUrlEncoded(
    std::string_view body);

// Percent-decoding of one form value ('+' is a space); nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s);
// Percent-encoding of one query value: everything but RFC 3986 unreserved characters.
std::string PercentEncode(std::string_view s);

// PKCE (RFC 7636): a code_challenge of method S256 is 43 characters of base64url.
bool IsPkceChallenge(std::string_view challenge);
// `verifier` is 43..128 unreserved characters and base64url(SHA-256(verifier)) == `challenge`.
bool PkceMatches(std::string_view verifier, std::string_view challenge);

// CSC's `lang` (an RFC 5646 language tag, matched case-insensitively) as the language consent
// writes a request's text in (what the app shows and the approval signs): "sr-Latn" for Serbian
// in Latin script ("sr-Latn", "sr-Latn-RS"), "en" for English ("en", "en-GB"), "sr-Cyrl" for
// Serbian otherwise ("sr", "sr-Cyrl", "sr-RS"), for an empty tag, and for a language qsign has no
// texts in (CSC: the language is used "if supported"). nullopt when `lang` is not a language tag:
// subtags of 1..8 ASCII letters or digits joined by '-', the first 2..8 letters, 35 characters
// at most.
std::optional<std::string_view> ConsentLanguage(std::string_view lang);

}  // namespace qsign::gateway

#endif  // QSIGN_SERVICES_GATEWAY_TEXT_H_
