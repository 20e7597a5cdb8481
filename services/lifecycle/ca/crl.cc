#include "services/lifecycle/ca/crl.h"

#include <openssl/err.h>

#include "absl/status/status.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "services/lifecycle/ca/der.h"

namespace qsign::lifecycle {
namespace {

std::string ExtensionDer(std::string_view oid, std::string_view value_der) {
  return der::Sequence({der::Oid(oid), der::OctetString(value_der)});
}

}  // namespace

absl::StatusOr<std::string> BuildCrl(const Ca& ca, const CrlContents& c) {
  const std::string issuer = ToDer(X509_get_subject_name(ca.cert()), i2d_X509_NAME);
  const std::string key_id = SubjectKeyId(ca.cert());
  if (issuer.empty() || key_id.empty()) return absl::InternalError("CRL: CA certificate");

  std::vector<std::string> entries;
  entries.reserve(c.revoked.size());
  for (const RevokedEntry& r : c.revoked) {
    if (r.reason == 0) {
      entries.push_back(der::Sequence({der::UnsignedInteger(r.serial), der::Time(r.revoked_at)}));
    } else {
      entries.push_back(der::Sequence(
          {der::UnsignedInteger(r.serial), der::Time(r.revoked_at),
           der::Sequence({ExtensionDer(oid::kCrlReason, der::Enumerated(r.reason))})}));
    }
  }
  const std::string extensions = der::Explicit(
      0, der::Sequence({
             ExtensionDer(oid::kAuthorityKeyIdentifier,
                          der::Sequence({der::Tlv(der::ContextPrimitive(0), key_id)})),
             ExtensionDer(oid::kCrlNumber, der::Integer(c.crl_number)),
         }));
  const std::string tbs = der::Sequence({
      der::Integer(1),  // v2
      ca.key().algorithm().algorithm_identifier_der,
      issuer,
      der::Time(c.this_update),
      der::Time(c.next_update),
      entries.empty() ? std::string() : der::SequenceOf(entries),
      extensions,
  });
  auto signed_der = ca.key().SignStructure(tbs);
  if (!signed_der.ok()) return signed_der.status();

  const unsigned char* p = Bytes(*signed_der);
  OsslPtr<X509_CRL> crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(signed_der->size())));
  if (crl == nullptr || X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.cert())) != 1) {
    ERR_clear_error();
    return absl::InternalError("CRL: the result does not parse or verify");
  }
  return signed_der;
}

}  // namespace qsign::lifecycle
