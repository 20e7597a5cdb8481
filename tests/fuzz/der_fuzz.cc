// The DER helpers: lifecycle's reader (services/lifecycle/ca/der.h) and hsm/'s key encodings
// (hsm/key_encoding.h, what a PKCS#11 module hands back). What the reader accepts is DER: written
// again, it is the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hsm/key_encoding.h"
#include "services/lifecycle/ca/der.h"

namespace der = ::qsign::lifecycle::der;
namespace hsm = ::qsign::hsm;

namespace {

// Walks an element tree, checking that every constructed element's children fill it exactly.
void Walk(const der::Element& e, int depth) {
  if (depth > 64) return;
  if (der::Tlv(e.tag, e.content) != e.encoded) std::abort();  // Length not minimal.
  if (e.tag == der::kOid) {
    auto text = der::OidText(e.content);
    if (text.ok() && der::Oid(*text) != e.encoded) std::abort();  // Oid() aborts on a bad one.
    return;
  }
  if ((e.tag & 0x20) == 0) return;
  auto children = der::Children(e.content);
  if (!children.ok()) return;
  std::string joined;
  for (const der::Element& c : *children) {
    joined.append(c.encoded);
    Walk(c, depth + 1);
  }
  if (joined != e.content) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto e = der::ReadAll(in);
      if (e.ok()) {
        if (e->encoded != in) std::abort();
        Walk(*e, 0);
      }
      std::string_view rest = in;
      for (int i = 0; i < 16 && !rest.empty(); ++i) {
        if (!der::Read(rest).ok()) break;
      }
      break;
    }
    case 1: {
      auto type = hsm::EcKeyTypeFromParams(in);
      if (type.ok() && hsm::EcParamsDer(*type) != in) std::abort();
      break;
    }
    case 2: {
      for (hsm::KeyType type : {hsm::KeyType::kEcP256, hsm::KeyType::kEcP384}) {
        auto point = hsm::UnwrapEcPoint(type, in);
        if (point.ok()) (void)hsm::EcSpkiDer(type, *point);
      }
      (void)hsm::EcdsaRawToDer(in);
      break;
    }
    case 3: {
      const size_t half = in.size() / 2;
      (void)hsm::RsaSpkiDer(in.substr(0, half), in.substr(half));
      break;
    }
  }
  return 0;
}
