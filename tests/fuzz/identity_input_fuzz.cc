// What a user or an officer types into the identity service: username (e-mail), national id
// (JMBG), names, free text, and the activation code the consent app redeems. The first byte picks
// the field; each accepted value must satisfy the rule the field's comment states.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/time/civil_time.h"
#include "services/identity/identity.h"
#include "services/identity/validation.h"

namespace id = ::qsign::identity;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      if (!id::ValidateEmail("username", in).ok()) break;
      if (in.size() > 254 || in.find('@') == std::string_view::npos) std::abort();
      // Stored lower-cased: the normalised form is still a valid address.
      if (!id::ValidateEmail("username", id::NormalizeUsername(in)).ok()) std::abort();
      break;
    }
    case 1: {
      if (!id::ValidateNationalId(in, absl::CivilDay(2026, 12, 5)).ok()) break;
      if (in.size() != 13) std::abort();
      for (char c : in) {
        if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) std::abort();
      }
      if (id::NationalIdCheckDigit(in.substr(0, 12)) != in[12] - '0') std::abort();
      break;
    }
    case 2: {
      if (!id::ValidatePersonName("given_name", in).ok()) break;
      if (!id::IsValidUtf8(in)) std::abort();
      const int n = id::Utf8Length(in);
      if (n < 1 || n > id::kMaxNameChars) std::abort();
      (void)id::ValidateCommonNameLength(in, in);
      break;
    }
    case 3: {
      if (!id::ValidateFreeText("reason", in, 512).ok()) break;
      if (in.size() > 512 || !id::IsValidUtf8(in)) std::abort();
      break;
    }
    case 4: {
      const std::string code = id::NormalizeActivationCode(in);
      if (code.empty()) break;
      if (code.size() != 16) std::abort();
      if (id::NormalizeActivationCode(id::FormatActivationCode(code)) != code) std::abort();
      break;
    }
  }
  return 0;
}
