#include "common/cades/validation_data.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cades/chain.h"
#include "common/cades/der.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::cades {
namespace {

// DER of OBJECT IDENTIFIER id-ri-ocsp-response (1.3.6.1.5.5.7.16.2).
constexpr char kOcspResponseOidDer[] = "\x06\x08\x2b\x06\x01\x05\x05\x07\x10\x02";
constexpr size_t kOcspResponseOidDerSize = 10;

std::string_view OcspOid() {
  return std::string_view(kOcspResponseOidDer, kOcspResponseOidDerSize);
}

std::string CertDer(X509* cert) { return ToDer(cert, i2d_X509); }

// The certificates of a CMS ContentInfo (SignedData.certificates).
std::vector<std::string> CmsCertificates(CMS_ContentInfo* cms) {
  std::vector<std::string> out;
  OsslPtr<STACK_OF(X509)> certs(CMS_get1_certs(cms));
  for (int i = 0; certs && i < sk_X509_num(certs.get()); ++i) {
    out.push_back(CertDer(sk_X509_value(certs.get(), i)));
  }
  return out;
}

// The signer certificate of a single-signer SignedData, found among its certificates.
OsslPtr<X509> SignerCertificate(CMS_ContentInfo* cms) {
  STACK_OF(CMS_SignerInfo)* signers = CMS_get0_SignerInfos(cms);  // Owned by cms.
  if (signers == nullptr || sk_CMS_SignerInfo_num(signers) != 1) return nullptr;
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(signers, 0);
  OsslPtr<STACK_OF(X509)> certs(CMS_get1_certs(cms));
  for (int i = 0; certs && i < sk_X509_num(certs.get()); ++i) {
    X509* c = sk_X509_value(certs.get(), i);
    if (CMS_SignerInfo_cert_cmp(si, c) == 0) {
      X509_up_ref(c);
      return OsslPtr<X509>(c);
    }
  }
  return nullptr;
}

std::string FirstOcspUrl(X509* cert) {
  STACK_OF(OPENSSL_STRING)* urls = X509_get1_ocsp(cert);
  std::string out;
  if (urls != nullptr && sk_OPENSSL_STRING_num(urls) > 0) out = sk_OPENSSL_STRING_value(urls, 0);
  X509_email_free(urls);
  return out;
}

std::string FirstCrlUrl(X509* cert) {
  OsslPtr<CRL_DIST_POINTS> points(static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr)));
  for (int i = 0; points && i < sk_DIST_POINT_num(points.get()); ++i) {
    DIST_POINT* dp = sk_DIST_POINT_value(points.get(), i);
    if (dp->distpoint == nullptr || dp->distpoint->type != 0) continue;
    GENERAL_NAMES* names = dp->distpoint->name.fullname;
    for (int j = 0; j < sk_GENERAL_NAME_num(names); ++j) {
      GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, j);
      if (gn->type == GEN_URI) {
        const ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
        return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                           static_cast<size_t>(ASN1_STRING_length(uri)));
      }
    }
  }
  return "";
}

bool HasOcspNoCheck(X509* cert) {
  return X509_get_ext_by_NID(cert, NID_id_pkix_OCSP_noCheck, -1) >= 0;
}

void AddUnique(std::vector<std::string>& list, std::string der) {
  for (const std::string& have : list) {
    if (have == der) return;
  }
  list.push_back(std::move(der));
}

// Revocation data for `cert` issued by `issuer`: OCSP when it names a responder, else the CRL.
absl::Status FetchStatus(X509* cert, X509* issuer, const Fetcher& fetch, ValidationData& out) {
  const std::string ocsp_url = FirstOcspUrl(cert);
  if (!ocsp_url.empty()) {
    OsslPtr<OCSP_REQUEST> req(OCSP_REQUEST_new());
    OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
    if (!req || id == nullptr || OCSP_request_add0_id(req.get(), id) == nullptr) {
      OCSP_CERTID_free(id);
      return OpenSslError("OCSP request");
    }
    auto answer = fetch.ocsp(ocsp_url, ToDer(req.get(), i2d_OCSP_REQUEST));
    if (!answer.ok()) return answer.status();
    const unsigned char* p = Bytes(*answer);
    OsslPtr<OCSP_RESPONSE> resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(answer->size())));
    if (!resp || OCSP_response_status(resp.get()) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
      ERR_clear_error();
      return absl::FailedPreconditionError(
          absl::StrCat("OCSP responder ", ocsp_url, " gave no status for ", SubjectText(cert)));
    }
    AddUnique(out.ocsp_responses_der, *std::move(answer));
    return absl::OkStatus();
  }
  const std::string crl_url = FirstCrlUrl(cert);
  if (crl_url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no OCSP responder and no CRL for ", SubjectText(cert)));
  }
  auto crl = fetch.crl(crl_url);
  if (!crl.ok()) return crl.status();
  AddUnique(out.crls_der, *std::move(crl));
  return absl::OkStatus();
}

// SignedData's elements: version, digestAlgorithms, encapContentInfo, [0] certificates,
// [1] crls, signerInfos.
struct SignedDataParts {
  std::string_view content_type;  // ContentInfo.contentType, whole.
  std::vector<DerElement> fields;
};

absl::StatusOr<SignedDataParts> SplitSignedData(std::string_view cms_der) {
  const absl::Status bad = absl::InvalidArgumentError("not a DER CMS SignedData");
  std::string_view in = cms_der;
  auto info = ReadElement(&in);
  if (!info.ok() || info->tag != 0x30 || !in.empty()) return bad;
  auto parts = ReadElements(info->value);
  if (!parts.ok() || parts->size() != 2 || (*parts)[1].tag != 0xa0) return bad;
  std::string_view explicit_content = (*parts)[1].value;
  auto signed_data = ReadElement(&explicit_content);
  if (!signed_data.ok() || signed_data->tag != 0x30) return bad;
  auto fields = ReadElements(signed_data->value);
  if (!fields.ok() || fields->size() < 4) return bad;
  return SignedDataParts{.content_type = (*parts)[0].whole, .fields = *std::move(fields)};
}

}  // namespace

absl::StatusOr<std::vector<std::string>> SignatureTimestampTokens(std::string_view cms_der) {
  auto cms = CmsOf(cms_der);
  if (!cms.ok()) return cms.status();
  auto only = OnlySignerInfo(cms->get());
  if (!only.ok()) return only.status();
  CMS_SignerInfo* si = *only;
  std::vector<std::string> out;
  for (int at = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, -1); at >= 0;
       at = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, at)) {
    X509_ATTRIBUTE* attr = CMS_unsigned_get_attr(si, at);  // Owned by si.
    for (int i = 0; i < X509_ATTRIBUTE_count(attr); ++i) {
      ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attr, i);
      if (value == nullptr || value->type != V_ASN1_SEQUENCE) continue;
      const ASN1_STRING* seq = value->value.sequence;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(seq)),
                       static_cast<size_t>(ASN1_STRING_length(seq)));
    }
  }
  return out;
}

absl::StatusOr<ValidationData> EmbeddedValidationData(std::string_view cms_der) {
  auto cms = CmsOf(cms_der);
  if (!cms.ok()) return cms.status();
  ValidationData out;
  out.certificates_der = CmsCertificates(cms->get());
  auto tokens = SignatureTimestampTokens(cms_der);
  if (!tokens.ok()) return tokens.status();
  for (const std::string& token : *tokens) {
    auto t = CmsOf(token);
    if (!t.ok()) continue;
    for (std::string& der : CmsCertificates(t->get()))
      AddUnique(out.certificates_der, std::move(der));
  }
  OsslPtr<STACK_OF(X509_CRL)> crls(CMS_get1_crls(cms->get()));
  for (int i = 0; crls && i < sk_X509_CRL_num(crls.get()); ++i) {
    out.crls_der.push_back(ToDer(sk_X509_CRL_value(crls.get(), i), i2d_X509_CRL));
  }
  auto parts = SplitSignedData(cms_der);
  if (!parts.ok()) return parts.status();
  for (const DerElement& field : parts->fields) {
    if (field.tag != 0xa1) continue;
    auto choices = ReadElements(field.value);
    if (!choices.ok()) return choices.status();
    for (const DerElement& choice : *choices) {
      if (choice.tag != 0xa1) continue;  // [1] OtherRevocationInfoFormat.
      std::string_view rest = choice.value;
      auto format = ReadElement(&rest);
      if (!format.ok() || format->whole != OcspOid()) continue;
      out.ocsp_responses_der.emplace_back(rest);
    }
  }
  return out;
}

absl::StatusOr<ValidationData> CollectValidationData(
    std::string_view cms_der, const std::vector<std::string>& trust_anchors_der,
    const Fetcher& fetch) {
  auto cms = CmsOf(cms_der);
  if (!cms.ok()) return cms.status();
  auto embedded = EmbeddedValidationData(cms_der);
  if (!embedded.ok()) return embedded.status();
  const std::vector<OsslPtr<X509>> untrusted = ParseCertificates(embedded->certificates_der);
  const std::vector<OsslPtr<X509>> anchors = ParseCertificates(trust_anchors_der);
  if (anchors.empty()) return absl::InvalidArgumentError("trust anchors: none");

  std::vector<OsslPtr<X509>> leaves;
  OsslPtr<X509> signer = SignerCertificate(cms->get());
  if (!signer) return absl::InvalidArgumentError("signature: the signer certificate is missing");
  leaves.push_back(std::move(signer));
  auto tokens = SignatureTimestampTokens(cms_der);
  if (!tokens.ok()) return tokens.status();
  for (const std::string& token : *tokens) {
    auto t = CmsOf(token);
    if (!t.ok()) return t.status();
    OsslPtr<X509> tsa = SignerCertificate(t->get());
    if (!tsa) return absl::InvalidArgumentError("timestamp token: the TSA certificate is missing");
    leaves.push_back(std::move(tsa));
  }

  ValidationData out;
  for (const auto& leaf : leaves) {
    auto chain = BuildChain(leaf.get(), untrusted, anchors, std::nullopt);
    if (!chain.ok()) return chain.status();
    for (size_t i = 0; i < chain->size(); ++i) {
      X509* cert = (*chain)[i].get();
      AddUnique(out.certificates_der, CertDer(cert));
      if (i + 1 == chain->size() || HasOcspNoCheck(cert)) continue;  // The anchor; a responder.
      if (auto s = FetchStatus(cert, (*chain)[i + 1].get(), fetch, out); !s.ok()) return s;
    }
  }
  return out;
}

absl::StatusOr<std::string> AddValidationData(std::string_view cms_der,
                                              const ValidationData& data) {
  auto cms = CmsOf(cms_der);
  if (!cms.ok()) return cms.status();
  auto present = EmbeddedValidationData(cms_der);
  if (!present.ok()) return present.status();
  const std::vector<std::string> have = CmsCertificates(cms->get());
  for (const std::string& der : data.certificates_der) {
    bool found = false;
    for (const std::string& h : have) found = found || h == der;
    if (found) continue;
    auto cert = CertificateOf(der);
    if (!cert.ok()) return cert.status();
    if (CMS_add1_cert(cms->get(), cert->get()) != 1) return OpenSslError("CMS_add1_cert");
  }
  for (const std::string& der : data.crls_der) {
    bool found = false;
    for (const std::string& h : present->crls_der) found = found || h == der;
    if (found) continue;
    const unsigned char* p = Bytes(der);
    OsslPtr<X509_CRL> crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    if (!crl) return absl::InvalidArgumentError("CRL: not DER");
    if (CMS_add1_crl(cms->get(), crl.get()) != 1) return OpenSslError("CMS_add1_crl");
  }
  auto with_certs = CmsDer(cms->get());
  if (!with_certs.ok()) return with_certs.status();

  // OCSP responses: OpenSSL has no API for "other" revocation info, so they are added to the
  // DER: [1] { otherRevInfoFormat id-ri-ocsp-response, otherRevInfo OCSPResponse } each.
  std::string others;
  for (const std::string& der : data.ocsp_responses_der) {
    bool found = false;
    for (const std::string& h : present->ocsp_responses_der) found = found || h == der;
    if (!found) absl::StrAppend(&others, Tlv(0xa1, absl::StrCat(Av(OcspOid()), der)));
  }
  if (others.empty()) return with_certs;
  auto parts = SplitSignedData(*with_certs);
  if (!parts.ok()) return parts.status();
  std::string body;
  bool crls_done = false;
  const size_t last = parts->fields.size() - 1;  // signerInfos.
  for (size_t i = 0; i < parts->fields.size(); ++i) {
    const DerElement& f = parts->fields[i];
    if (i == 0) {
      body += Tlv(0x02, std::string(1, '\x05'));  // Version 5: other revocation info present.
    } else if (f.tag == 0xa1) {
      body += Tlv(0xa1, absl::StrCat(Av(f.value), others));
      crls_done = true;
    } else if (i == last && !crls_done) {
      body += Tlv(0xa1, others);
      body += std::string(f.whole);
    } else {
      body += std::string(f.whole);
    }
  }
  return Tlv(0x30, absl::StrCat(Av(parts->content_type), Tlv(0xa0, Tlv(0x30, body))));
}

}  // namespace qsign::cades
