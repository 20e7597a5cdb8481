// The three languages of the web front ends: Serbian in Cyrillic (the default), Serbian in Latin
// and English. Serbian texts are written once, in Cyrillic; the Latin ones are transliterated
// (Serbian's two scripts map letter for letter), so the two can never drift apart.
#ifndef QSIGN_SERVICES_WEB_I18N_H_
#define QSIGN_SERVICES_WEB_I18N_H_

#include <string>
#include <string_view>
#include <vector>

namespace qsign::web {

enum class Lang { kSrCyrl, kSrLatn, kEn };

// "sr-Cyrl", "sr-Latn", "en": the cookie value and the <html lang>.
std::string_view LangTag(Lang lang);
// The language of a tag; the default (sr-Cyrl) for anything else.
Lang ParseLang(std::string_view tag);
// Every language, in the order of the switcher.
const std::vector<Lang>& AllLangs();

// The text of message `key` in `lang`; the key itself when there is none (a test catches that).
std::string T(Lang lang, std::string_view key);
// Every message key, for the tests.
std::vector<std::string_view> MessageKeys();

// Serbian Cyrillic to Serbian Latin (Љ -> Lj, ђ -> đ, ...); other characters unchanged.
std::string CyrillicToLatin(std::string_view text);

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_I18N_H_
