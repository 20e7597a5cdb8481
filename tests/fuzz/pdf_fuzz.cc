// PDF input as the CSC gateway's signDoc and `qsign verify` read it (common/pades, PoDoFo): page
// count, signature fields, byte ranges and the DSS of any bytes. Anything goes in; an error comes
// out, never a crash, a hang or a leak.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/pades/pdf_signature.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 20) return 0;
  const std::string_view pdf(reinterpret_cast<const char*>(data), size);
  auto facts = qsign::pades::ReadPdf(pdf);
  auto pages = qsign::pades::PageCount(pdf);
  if (facts.ok() && pages.ok() && facts->page_count != *pages) std::abort();
  if (facts.ok()) {
    for (const auto& s : facts->signatures) {
      // A range the reader calls well formed lies inside the file.
      if (s.byte_range_ok &&
          (s.byte_range[0] != 0 || s.byte_range[2] + s.byte_range[3] > static_cast<int64_t>(size))) {
        std::abort();
      }
    }
  }
  return 0;
}
