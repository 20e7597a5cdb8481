// A small DER writer and reader for the structures the CA signs (RFC 5280, RFC 6960,
// ETSI EN 319 412-5) where OpenSSL has no builder that leaves the signing to us.
// The writer produces DER for well-formed input only; the reader checks what it reads.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_DER_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_DER_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::lifecycle::der {

// Universal tags (with the constructed bit where the type is constructed).
inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kNull = 0x05;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kEnumerated = 0x0a;
inline constexpr uint8_t kUtf8String = 0x0c;
inline constexpr uint8_t kPrintableString = 0x13;
inline constexpr uint8_t kIa5String = 0x16;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;

// Context-specific tags [n]: constructed (EXPLICIT, or IMPLICIT over a constructed type) and
// primitive (IMPLICIT over a primitive type).
constexpr uint8_t ContextConstructed(int n) { return static_cast<uint8_t>(0xa0 | n); }
constexpr uint8_t ContextPrimitive(int n) { return static_cast<uint8_t>(0x80 | n); }

// Tag, length, content.
std::string Tlv(uint8_t tag, std::string_view content);
// SEQUENCE of already encoded elements, in order.
std::string Sequence(std::initializer_list<std::string_view> elements);
std::string SequenceOf(const std::vector<std::string>& elements);
// [n] EXPLICIT around one encoded element.
std::string Explicit(int n, std::string_view element);

std::string Boolean(bool value);
std::string Null();
// Non-negative INTEGER from unsigned big-endian bytes (leading zeros dropped, 0x00 added when
// the high bit is set).
std::string UnsignedInteger(std::string_view big_endian);
std::string Integer(int64_t value);
std::string Enumerated(int value);
std::string OctetString(std::string_view bytes);
// BIT STRING with no unused bits.
std::string BitString(std::string_view bytes);
// Named-bit BIT STRING (KeyUsage): bit 0 is the most significant bit of the first byte; DER drops
// trailing zero bits.
std::string NamedBits(std::initializer_list<int> bits);
// Dotted OID, e.g. "0.4.0.1862.1.1". The OID must be valid (a constant in our code): an invalid
// one is a bug and aborts.
std::string Oid(std::string_view dotted);
std::string Utf8String(std::string_view utf8);
std::string PrintableString(std::string_view text);
std::string Ia5String(std::string_view text);
// GeneralizedTime "YYYYMMDDHHMMSSZ" (seconds; fractions dropped).
std::string GeneralizedTime(absl::Time t);
// RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050.
std::string Time(absl::Time t);

// One element as read: its tag, its content and its whole encoding.
struct Element {
  uint8_t tag = 0;
  std::string_view content;
  std::string_view encoded;
};

// Reads one element from the front of `in` and advances `in` past it. Definite lengths only,
// minimal length encoding, single-byte tags; INVALID_ARGUMENT otherwise.
absl::StatusOr<Element> Read(std::string_view& in);
// Reads exactly one element that fills `in`.
absl::StatusOr<Element> ReadAll(std::string_view in);
// The elements inside a constructed element's content, in order.
absl::StatusOr<std::vector<Element>> Children(std::string_view content);
// Dotted text of an OID's content octets.
absl::StatusOr<std::string> OidText(std::string_view content);

}  // namespace qsign::lifecycle::der

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_DER_H_
