#include "services/lifecycle/ca/der.h"

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::lifecycle::der {
namespace {

void AppendLength(size_t len, std::string* out) {
  if (len < 0x80) {
    out->push_back(static_cast<char>(len));
    return;
  }
  std::string bytes;
  for (size_t l = len; l > 0; l >>= 8) bytes.insert(bytes.begin(), static_cast<char>(l & 0xff));
  out->push_back(static_cast<char>(0x80 | bytes.size()));
  out->append(bytes);
}

void AppendBase128(uint64_t v, std::string* out) {
  std::string bytes(1, static_cast<char>(v & 0x7f));
  for (v >>= 7; v > 0; v >>= 7) bytes.insert(bytes.begin(), static_cast<char>(0x80 | (v & 0x7f)));
  out->append(bytes);
}

[[noreturn]] void Bug(std::string_view what) {
  Log(LogLevel::kError, "der", "invalid constant", {{"what", what}});
  std::abort();
}

std::string FormatTime(absl::Time t, const char* format) {
  return absl::FormatTime(format, absl::FromUnixSeconds(absl::ToUnixSeconds(t)),
                          absl::UTCTimeZone());
}

}  // namespace

std::string Tlv(uint8_t tag, std::string_view content) {
  std::string out(1, static_cast<char>(tag));
  AppendLength(content.size(), &out);
  out.append(content);
  return out;
}

std::string Sequence(std::initializer_list<std::string_view> elements) {
  std::string content;
  for (std::string_view e : elements) content.append(e);
  return Tlv(kSequence, content);
}

std::string SequenceOf(const std::vector<std::string>& elements) {
  std::string content;
  for (const std::string& e : elements) content.append(e);
  return Tlv(kSequence, content);
}

std::string Explicit(int n, std::string_view element) {
  return Tlv(ContextConstructed(n), element);
}

std::string Boolean(bool value) { return Tlv(kBoolean, value ? "\xff" : std::string(1, '\0')); }

std::string Null() { return Tlv(kNull, ""); }

std::string UnsignedInteger(std::string_view big_endian) {
  size_t i = 0;
  while (i + 1 < big_endian.size() && big_endian[i] == 0) ++i;
  std::string content(big_endian.substr(i));
  if (content.empty()) content.push_back('\0');
  if (static_cast<uint8_t>(content[0]) & 0x80) content.insert(content.begin(), '\0');
  return Tlv(kInteger, content);
}

std::string Integer(int64_t value) {
  std::string content;
  // Two's complement, minimal: drop leading bytes that only repeat the sign.
  for (int shift = 56; shift >= 0; shift -= 8) {
    content.push_back(static_cast<char>((value >> shift) & 0xff));
  }
  while (content.size() > 1) {
    const auto b0 = static_cast<uint8_t>(content[0]);
    const auto b1 = static_cast<uint8_t>(content[1]);
    if ((b0 == 0x00 && !(b1 & 0x80)) || (b0 == 0xff && (b1 & 0x80))) {
      content.erase(content.begin());
    } else {
      break;
    }
  }
  return Tlv(kInteger, content);
}

std::string Enumerated(int value) {
  std::string i = Integer(value);
  i[0] = static_cast<char>(kEnumerated);
  return i;
}

std::string OctetString(std::string_view bytes) { return Tlv(kOctetString, bytes); }

std::string BitString(std::string_view bytes) {
  std::string content(1, '\0');
  content.append(bytes);
  return Tlv(kBitString, content);
}

std::string NamedBits(std::initializer_list<int> bits) {
  int highest = -1;
  for (int b : bits) highest = std::max(highest, b);
  if (highest < 0) return Tlv(kBitString, std::string(1, '\0'));
  std::string bytes(static_cast<size_t>(highest / 8 + 1), '\0');
  for (int b : bits) bytes[b / 8] = static_cast<char>(bytes[b / 8] | (0x80 >> (b % 8)));
  const int unused = 7 - highest % 8;
  std::string content(1, static_cast<char>(unused));
  content.append(bytes);
  return Tlv(kBitString, content);
}

std::string Oid(std::string_view dotted) {
  std::vector<uint64_t> arcs;
  for (absl::string_view part : absl::StrSplit(Av(dotted), '.')) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) Bug(dotted);
    arcs.push_back(v);
  }
  if (arcs.size() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40)) Bug(dotted);
  std::string content;
  AppendBase128(arcs[0] * 40 + arcs[1], &content);
  for (size_t i = 2; i < arcs.size(); ++i) AppendBase128(arcs[i], &content);
  return Tlv(kOid, content);
}

std::string Utf8String(std::string_view utf8) { return Tlv(kUtf8String, utf8); }
std::string PrintableString(std::string_view text) { return Tlv(kPrintableString, text); }
std::string Ia5String(std::string_view text) { return Tlv(kIa5String, text); }

std::string GeneralizedTime(absl::Time t) {
  return Tlv(kGeneralizedTime, FormatTime(t, "%Y%m%d%H%M%SZ"));
}

std::string Time(absl::Time t) {
  const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  if (cs.year() >= 1950 && cs.year() <= 2049) {
    return Tlv(kUtcTime, FormatTime(t, "%y%m%d%H%M%SZ"));
  }
  return GeneralizedTime(t);
}

absl::StatusOr<Element> Read(std::string_view& in) {
  if (in.size() < 2) return absl::InvalidArgumentError("DER: truncated element");
  Element e;
  e.tag = static_cast<uint8_t>(in[0]);
  if ((e.tag & 0x1f) == 0x1f) return absl::InvalidArgumentError("DER: multi-byte tag");
  size_t len = static_cast<uint8_t>(in[1]);
  size_t header = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0) return absl::InvalidArgumentError("DER: indefinite length");
    if (n > 4 || in.size() < 2 + n) return absl::InvalidArgumentError("DER: bad length");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<uint8_t>(in[2 + i]);
    if (len < 0x80 || static_cast<uint8_t>(in[2]) == 0) {
      return absl::InvalidArgumentError("DER: length not minimal");
    }
    header += n;
  }
  if (in.size() - header < len) return absl::InvalidArgumentError("DER: truncated content");
  e.content = in.substr(header, len);
  e.encoded = in.substr(0, header + len);
  in.remove_prefix(header + len);
  return e;
}

absl::StatusOr<Element> ReadAll(std::string_view in) {
  auto e = Read(in);
  if (!e.ok()) return e.status();
  if (!in.empty()) return absl::InvalidArgumentError("DER: trailing bytes");
  return e;
}

absl::StatusOr<std::vector<Element>> Children(std::string_view content) {
  std::vector<Element> out;
  while (!content.empty()) {
    auto e = Read(content);
    if (!e.ok()) return e.status();
    out.push_back(*e);
  }
  return out;
}

absl::StatusOr<std::string> OidText(std::string_view content) {
  if (content.empty()) return absl::InvalidArgumentError("DER: empty OID");
  std::string out;
  uint64_t v = 0;
  bool first = true;
  for (size_t i = 0; i < content.size(); ++i) {
    const auto b = static_cast<uint8_t>(content[i]);
    if (v == 0 && b == 0x80) return absl::InvalidArgumentError("DER: OID arc not minimal");
    if (v > (UINT64_MAX >> 7)) return absl::InvalidArgumentError("DER: OID arc too large");
    v = (v << 7) | (b & 0x7f);
    if (b & 0x80) {
      if (i + 1 == content.size()) return absl::InvalidArgumentError("DER: truncated OID");
      continue;
    }
    if (first) {
      const uint64_t top = v < 40 ? 0 : (v < 80 ? 1 : 2);
      absl::StrAppend(&out, top, ".", v - top * 40);
      first = false;
    } else {
      absl::StrAppend(&out, ".", v);
    }
    v = 0;
  }
  return out;
}

}  // namespace qsign::lifecycle::der
