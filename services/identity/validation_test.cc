#include "services/identity/validation.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_data.h"

namespace qsign::identity {
namespace {

using ::testing::HasSubstr;

const absl::CivilDay kToday(2027, 1, 15);

void ExpectInvalid(const absl::Status& s, std::string_view part) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(part));
}

TEST(NationalIdTest, AcceptsRealNumbers) {
  for (const char* id :
       {"0101990710008", "2902000710009" /* 29.02.2000, a leap day */,
        "0404990710000" /* check digit 11 -> 0 */, "1501027710002" /* today */, "0101007710004"}) {
    EXPECT_TRUE(ValidateNationalId(id, kToday).ok())
        << id << ": " << ValidateNationalId(id, kToday);
  }
}

// The tests' NationalId(n) (computed from the rule on its own) and this service agree.
TEST(NationalIdTest, AcceptsTheTestDataNumbers) {
  EXPECT_EQ(qsign::testing::NationalId(0), "0101990710008");
  std::set<std::string> seen;
  for (int n = 0; n < 1000; ++n) {
    const std::string id = qsign::testing::NationalId(n);
    EXPECT_TRUE(ValidateNationalId(id, kToday).ok()) << n << ": " << id;
    EXPECT_TRUE(seen.insert(id).second) << n << ": " << id << " again";
  }
}

TEST(NationalIdTest, CheckDigitFormula) {
  EXPECT_EQ(NationalIdCheckDigit("010199071000"), 8);
  EXPECT_EQ(NationalIdCheckDigit("040499071000"), 0);   // 11 -> 0.
  EXPECT_EQ(NationalIdCheckDigit("010199071013"), -1);  // 10: no valid number.
}

TEST(NationalIdTest, RefusesEachRuleWithItsOwnMessage) {
  ExpectInvalid(ValidateNationalId("", kToday), "national_id: required");
  ExpectInvalid(ValidateNationalId("010199071000", kToday),
                "national_id: exactly 13 digits required, got 12");
  ExpectInvalid(ValidateNationalId("01019907100088", kToday), "exactly 13 digits");
  ExpectInvalid(ValidateNationalId("0101-90710008", kToday), "national_id: digits only");
  ExpectInvalid(ValidateNationalId("010199071000a", kToday), "digits only");
  // Wrong check digit (8 is right).
  ExpectInvalid(ValidateNationalId("0101990710007", kToday),
                "national_id: the check digit (13th digit, mod 11) does not match");
  // The formula gives 10 for these 12 digits: no 13th digit makes them valid.
  for (char k = '0'; k <= '9'; ++k) {
    ExpectInvalid(ValidateNationalId(std::string("010199071013") + k, kToday),
                  "mod-11 check of the first 12 digits gives 10");
  }
}

TEST(NationalIdTest, RefusesImpossibleDates) {
  ExpectInvalid(ValidateNationalId("2902900710004", kToday),
                "digits 1-7 are not a real date of birth (29.02.1900)");  // 1900 is no leap year.
  ExpectInvalid(ValidateNationalId("3104990710008", kToday), "not a real date of birth (31.04.");
  ExpectInvalid(ValidateNationalId("0001990710003", kToday), "not a real date of birth");
  ExpectInvalid(ValidateNationalId("3201990710003", kToday), "not a real date of birth");
  ExpectInvalid(ValidateNationalId("0113990710006", kToday), "month of birth: 01..12");
  ExpectInvalid(ValidateNationalId("0101800710007", kToday),
                "9xx for the 1900s or 0xx for the 2000s");
}

TEST(NationalIdTest, RefusesFutureBirthDates) {
  ExpectInvalid(ValidateNationalId("1601027710007", kToday),
                "national_id: the date of birth (digits 1-7) is in the future");
  ExpectInvalid(ValidateNationalId("0106027710002", kToday), "in the future");
}

TEST(EmailTest, AcceptsOrdinaryAddresses) {
  for (const char* e : {"ana@example.rs", "Ana.Petrovic+qsign@mail.example.co.rs",
                        "x_y-z@sub-domain.example.com", "a@xn--80ak6aa92e.xn--90a3ac"}) {
    EXPECT_TRUE(ValidateEmail("username", e).ok()) << e << ": " << ValidateEmail("username", e);
  }
}

TEST(EmailTest, RefusesEachRule) {
  ExpectInvalid(ValidateEmail("username", ""), "username: required");
  ExpectInvalid(ValidateEmail("username", "ana.example.rs"),
                "username: an e-mail address has exactly one '@'");
  ExpectInvalid(ValidateEmail("username", "a@b@example.rs"), "exactly one '@'");
  ExpectInvalid(ValidateEmail("username", "@example.rs"), "before '@' has 1..64 characters");
  ExpectInvalid(ValidateEmail("username", std::string(65, 'a') + "@example.rs"),
                "1..64 characters");
  ExpectInvalid(ValidateEmail("username", "ana petrovic@example.rs"), "allows letters, digits");
  ExpectInvalid(ValidateEmail("username", ".ana@example.rs"), "no leading, trailing or doubled");
  ExpectInvalid(ValidateEmail("username", "ana..p@example.rs"), "doubled '.'");
  ExpectInvalid(ValidateEmail("username", "ana@localhost"), "at least two labels");
  ExpectInvalid(ValidateEmail("username", "ana@example..rs"), "each domain label has 1..63");
  ExpectInvalid(ValidateEmail("username", "ana@exa_mple.rs"), "the domain allows letters");
  ExpectInvalid(ValidateEmail("username", "ana@-example.rs"), "does not begin or end with '-'");
  ExpectInvalid(ValidateEmail("username", "ana@example.r5"), "top-level domain");
  ExpectInvalid(ValidateEmail("username", "ana@primer.срб"), "the domain allows letters");
  ExpectInvalid(ValidateEmail("certificate_email", std::string(250, 'a') + "@example.rs"),
                "certificate_email: an e-mail address has at most 254 characters");
}

TEST(EmailTest, UsernamesAreLowerCased) {
  EXPECT_EQ(NormalizeUsername("Ana.Petrovic@Example.RS"), "ana.petrovic@example.rs");
}

TEST(PersonNameTest, AcceptsLatinAndCyrillicNames) {
  for (const char* n : {"Ana", "Đorđe", "Čedomir", "Željko", "Ana-Marija", "O'Brien", "J. R.",
                        "Ђорђе", "Милица Јовановић", "Émile", "Ana Marija"}) {
    EXPECT_TRUE(ValidatePersonName("given_name", n).ok())
        << n << ": " << ValidatePersonName("given_name", n);
  }
}

TEST(PersonNameTest, RefusesEachRule) {
  ExpectInvalid(ValidatePersonName("given_name", ""), "given_name: required");
  ExpectInvalid(ValidatePersonName("surname", std::string(65, 'a')),
                "surname: at most 64 characters");
  // 64 two-byte characters are fine: the limit counts characters, not bytes.
  std::string long_cyrillic;
  for (int i = 0; i < 64; ++i) long_cyrillic += "ж";
  EXPECT_TRUE(ValidatePersonName("surname", long_cyrillic).ok());
  ExpectInvalid(ValidatePersonName("surname", "Ana\xC3"), "surname: not valid UTF-8");
  ExpectInvalid(ValidatePersonName("surname", "\xC0\xA0"), "not valid UTF-8");  // Overlong.
  ExpectInvalid(ValidatePersonName("surname", "Ana2"), "letters (Latin or Cyrillic)");
  ExpectInvalid(ValidatePersonName("surname", "Ana\tB"), "letters (Latin or Cyrillic)");
  ExpectInvalid(ValidatePersonName("surname", "Ana😀"), "letters (Latin or Cyrillic)");
  ExpectInvalid(ValidatePersonName("surname", "Ἀθηνᾶ"), "letters (Latin or Cyrillic)");
  ExpectInvalid(ValidatePersonName("surname", " Ana"), "begins with a letter");
  ExpectInvalid(ValidatePersonName("surname", "Ana "), "ends with a letter or '.'");
  ExpectInvalid(ValidatePersonName("surname", "Ana  Marija"), "no two spaces");
  ExpectInvalid(ValidatePersonName("surname", "Ana--Marija"), "no two spaces or punctuation");
}

TEST(PersonNameTest, CommonNameFitsTheCertificate) {
  EXPECT_TRUE(ValidateCommonNameLength(std::string(31, 'a'), std::string(32, 'b')).ok());
  ExpectInvalid(ValidateCommonNameLength(std::string(32, 'a'), std::string(32, 'b')),
                "given_name, surname: \"<given_name> <surname>\" is at most 64 characters");
}

TEST(FreeTextTest, RefusesControlCharactersAndBadUtf8) {
  EXPECT_TRUE(ValidateFreeText("note", "Проверено у шалтер сали, лична карта", 500).ok());
  ExpectInvalid(ValidateFreeText("note", "a\nb", 500), "note: no control characters");
  ExpectInvalid(ValidateFreeText("note", "\xFF", 500), "note: not valid UTF-8");
  ExpectInvalid(ValidateFreeText("note", std::string(501, 'a'), 500), "note: at most 500 bytes");
}

}  // namespace
}  // namespace qsign::identity
