#include "common/cades/der.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::cades {

absl::Status OpenSslError(std::string_view what) {
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(Av(what), " failed (OpenSSL)"));
}

absl::StatusOr<OsslPtr<X509>> CertificateOf(std::string_view der) {
  OsslPtr<X509> cert = ParseCertificate(der);
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError("certificate: not DER X.509");
  }
  return cert;
}

absl::StatusOr<OsslPtr<CMS_ContentInfo>> CmsOf(std::string_view der) {
  const unsigned char* p = Bytes(der);
  OsslPtr<CMS_ContentInfo> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms || p != Bytes(der) + der.size()) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a DER CMS ContentInfo");
  }
  return cms;
}

absl::StatusOr<CMS_SignerInfo*> OnlySignerInfo(CMS_ContentInfo* cms) {
  STACK_OF(CMS_SignerInfo)* signers = CMS_get0_SignerInfos(cms);  // Owned by cms.
  if (signers == nullptr || sk_CMS_SignerInfo_num(signers) != 1) {
    return absl::InvalidArgumentError("signature: not exactly one SignerInfo");
  }
  return sk_CMS_SignerInfo_value(signers, 0);
}

std::string StringOf(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

absl::StatusOr<std::string> CmsDer(CMS_ContentInfo* cms) {
  std::string der = ToDer(cms, i2d_CMS_ContentInfo);
  if (der.empty()) return OpenSslError("CMS encoding");
  return der;
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;  // Owned by bio.
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> SignedAttributesDer(CMS_SignerInfo* si) {
  OsslPtr<STACK_OF(X509_ATTRIBUTE)> attrs(sk_X509_ATTRIBUTE_new_null());
  if (!attrs) return OpenSslError("attributes");
  for (int i = 0; i < CMS_signed_get_attr_count(si); ++i) {
    sk_X509_ATTRIBUTE_push(attrs.get(), CMS_signed_get_attr(si, i));  // Not owned.
  }
  unsigned char* buf = nullptr;
  const int len = ASN1_item_i2d(reinterpret_cast<ASN1_VALUE*>(attrs.get()), &buf,
                                ASN1_ITEM_rptr(PKCS7_ATTR_SIGN));
  if (len <= 0) return OpenSslError("signed attributes encoding");
  OsslPtr<unsigned char> owned(buf);
  return std::string(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
}

std::string Tlv(unsigned char tag, std::string_view value) {
  std::string out(1, static_cast<char>(tag));
  const size_t n = value.size();
  if (n < 0x80) {
    out.push_back(static_cast<char>(n));
  } else {
    std::string len;
    for (size_t v = n; v > 0; v >>= 8) len.insert(len.begin(), static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(0x80 | len.size()));
    out += len;
  }
  out.append(value);
  return out;
}

absl::StatusOr<DerElement> ReadElement(std::string_view* in) {
  const absl::Status bad = absl::InvalidArgumentError("malformed DER");
  std::string_view s = *in;
  if (s.size() < 2 || (static_cast<unsigned char>(s[0]) & 0x1f) == 0x1f) return bad;
  const auto tag = static_cast<unsigned char>(s[0]);
  const auto first = static_cast<unsigned char>(s[1]);
  size_t header = 2;
  size_t length = first;
  if (first & 0x80) {
    const size_t n = first & 0x7f;
    if (n == 0 || n > 4 || s.size() < 2 + n) return bad;  // No indefinite lengths.
    length = 0;
    for (size_t i = 0; i < n; ++i) length = (length << 8) | static_cast<unsigned char>(s[2 + i]);
    header += n;
  }
  if (s.size() - header < length) return bad;
  DerElement e{
      .tag = tag, .value = s.substr(header, length), .whole = s.substr(0, header + length)};
  in->remove_prefix(header + length);
  return e;
}

absl::StatusOr<std::vector<DerElement>> ReadElements(std::string_view contents) {
  std::vector<DerElement> out;
  while (!contents.empty()) {
    auto e = ReadElement(&contents);
    if (!e.ok()) return e.status();
    out.push_back(*e);
  }
  return out;
}

}  // namespace qsign::cades
