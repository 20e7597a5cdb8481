#include "common/oids.h"

namespace qsign::oid {
namespace {

constexpr HashOid kHashOids[] = {{kSha256, 32}, {kSha384, 48}, {kSha512, 64}};

constexpr SignOid kSignOids[] = {
    {kEcdsaWithSha256, SignFamily::kEcdsa, kSha256},
    {kEcdsaWithSha384, SignFamily::kEcdsa, kSha384},
    {kEcdsaWithSha512, SignFamily::kEcdsa, kSha512},
    {kEcPublicKey, SignFamily::kEcdsa, nullptr},
    {kSha256WithRsa, SignFamily::kRsaPkcs1, kSha256},
    {kSha384WithRsa, SignFamily::kRsaPkcs1, kSha384},
    {kSha512WithRsa, SignFamily::kRsaPkcs1, kSha512},
    {kRsaEncryption, SignFamily::kRsaPkcs1, nullptr},
    {kRsassaPss, SignFamily::kRsaPss, nullptr},
};

}  // namespace

std::span<const HashOid> HashOids() { return kHashOids; }
std::span<const SignOid> SignOids() { return kSignOids; }

const HashOid* FindHashOid(std::string_view oid) {
  for (const HashOid& h : kHashOids) {
    if (oid == h.oid) return &h;
  }
  return nullptr;
}

const SignOid* FindSignOid(std::string_view oid) {
  for (const SignOid& s : kSignOids) {
    if (oid == s.oid) return &s;
  }
  return nullptr;
}

}  // namespace qsign::oid
