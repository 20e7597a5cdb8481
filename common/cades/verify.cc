#include "common/cades/verify.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/ocsp.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cades/chain.h"
#include "common/cades/der.h"
#include "common/cades/timestamp.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::cades {
namespace {

std::optional<absl::Time> TimeOf(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return absl::FromTM(tm, absl::UTCTimeZone());
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

OsslPtr<STACK_OF(X509)> StackOf(const std::vector<OsslPtr<X509>>& certs) {
  OsslPtr<STACK_OF(X509)> out(sk_X509_new_null());
  for (const auto& c : certs) {
    X509_up_ref(c.get());
    sk_X509_push(out.get(), c.get());
  }
  return out;
}

OsslPtr<X509_STORE> StoreOf(const std::vector<OsslPtr<X509>>& anchors,
                            std::optional<absl::Time> at) {
  OsslPtr<X509_STORE> store(X509_STORE_new());
  for (const auto& a : anchors) X509_STORE_add_cert(store.get(), a.get());
  if (at.has_value())
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), absl::ToTimeT(*at));
  return store;
}

struct Context {
  const std::vector<OsslPtr<X509>>& untrusted;
  const std::vector<OsslPtr<X509>>& anchors;
  const ValidationData& data;
};

// The status of `cert` (issued by `issuer`) at `at` from the OCSP responses and CRLs in `ctx`.
CertificateReport StatusAt(X509* cert, X509* issuer, absl::Time at, const Context& ctx) {
  CertificateReport r{.subject = SubjectText(cert), .serial_hex = SerialText(cert)};
  r.not_before = TimeOf(X509_get0_notBefore(cert)).value_or(absl::InfinitePast());
  r.not_after = TimeOf(X509_get0_notAfter(cert)).value_or(absl::InfiniteFuture());
  r.status = "unknown";
  for (const std::string& der : ctx.data.ocsp_responses_der) {
    const unsigned char* p = Bytes(der);
    OsslPtr<OCSP_RESPONSE> resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    if (!resp) continue;
    OsslPtr<OCSP_BASICRESP> basic(OCSP_response_get1_basic(resp.get()));
    OsslPtr<OCSP_CERTID> id(OCSP_cert_to_id(EVP_sha1(), cert, issuer));
    if (!basic || !id) continue;
    int status = -1, reason = -1;
    ASN1_GENERALIZEDTIME *revoked = nullptr, *this_update = nullptr, *next_update = nullptr;
    if (OCSP_resp_find_status(basic.get(), id.get(), &status, &reason, &revoked, &this_update,
                              &next_update) != 1) {
      continue;
    }
    const std::optional<absl::Time> produced = TimeOf(OCSP_resp_get0_produced_at(basic.get()));
    // The responder and its chain as they were when the response was produced.
    OsslPtr<STACK_OF(X509)> certs = StackOf(ctx.untrusted);
    OsslPtr<X509_STORE> store = StoreOf(ctx.anchors, produced);
    if (OCSP_basic_verify(basic.get(), certs.get(), store.get(), 0) != 1) {
      ERR_clear_error();
      continue;
    }
    const std::optional<absl::Time> from = TimeOf(this_update);
    const std::optional<absl::Time> until = TimeOf(next_update);
    const std::string source =
        absl::StrCat("OCSP response produced at ", produced ? TimeText(*produced) : "?");
    if (status == V_OCSP_CERTSTATUS_REVOKED) {
      r.revoked_at = TimeOf(revoked);
      r.status_source = source;
      r.status = r.revoked_at && *r.revoked_at > at ? "good" : "revoked";
      return r;
    }
    // Good: the response must speak for `at` (issued after it, or still current at it).
    if (status == V_OCSP_CERTSTATUS_GOOD && ((from && *from >= at) || (until && *until >= at))) {
      r.status = "good";
      r.status_source = source;
      return r;
    }
  }
  for (const std::string& der : ctx.data.crls_der) {
    const unsigned char* p = Bytes(der);
    OsslPtr<X509_CRL> crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    if (!crl || X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_issuer_name(cert)) != 0 ||
        X509_CRL_verify(crl.get(), X509_get0_pubkey(issuer)) != 1) {
      ERR_clear_error();
      continue;
    }
    const std::optional<absl::Time> from = TimeOf(X509_CRL_get0_lastUpdate(crl.get()));
    const std::optional<absl::Time> until = TimeOf(X509_CRL_get0_nextUpdate(crl.get()));
    const std::string source =
        absl::StrCat("CRL of ", SubjectText(issuer), " issued at ", from ? TimeText(*from) : "?");
    X509_REVOKED* entry = nullptr;  // Owned by crl.
    if (X509_CRL_get0_by_cert(crl.get(), &entry, cert) == 1) {
      r.revoked_at = TimeOf(X509_REVOKED_get0_revocationDate(entry));
      r.status_source = source;
      r.status = r.revoked_at && *r.revoked_at > at ? "good" : "revoked";
      return r;
    }
    if ((from && *from >= at) || (until && *until >= at)) {
      r.status = "good";
      r.status_source = source;
      return r;
    }
  }
  return r;
}

// Reports for a chain at `at`: revocation status of every certificate but the anchor.
std::vector<CertificateReport> ChainStatus(const std::vector<OsslPtr<X509>>& chain, absl::Time at,
                                           const Context& ctx) {
  std::vector<CertificateReport> out;
  for (size_t i = 0; i < chain.size(); ++i) {
    X509* cert = chain[i].get();
    if (i + 1 == chain.size()) {
      out.push_back({.subject = SubjectText(cert),
                     .serial_hex = SerialText(cert),
                     .not_before = TimeOf(X509_get0_notBefore(cert)).value_or(absl::InfinitePast()),
                     .not_after = TimeOf(X509_get0_notAfter(cert)).value_or(absl::InfiniteFuture()),
                     .status = "trust anchor"});
    } else if (X509_get_ext_by_NID(cert, NID_id_pkix_OCSP_noCheck, -1) >= 0) {
      CertificateReport r = StatusAt(cert, chain[i + 1].get(), at, ctx);
      r.status = "not checked (OCSP responder)";
      out.push_back(std::move(r));
    } else {
      out.push_back(StatusAt(cert, chain[i + 1].get(), at, ctx));
    }
  }
  return out;
}

void Fail(Report& r, Indication indication, std::string sub, std::string problem) {
  if (r.indication != Indication::kTotalFailed) {
    // A failure outranks an indeterminate result; the first reason of each kind is kept.
    if (indication == Indication::kTotalFailed || r.sub_indication.empty()) {
      r.indication = indication;
      r.sub_indication = std::move(sub);
    }
  }
  r.problems.push_back(std::move(problem));
}

// The first problem in a chain's statuses, as (indication, sub-indication, sentence).
bool CheckStatuses(Report& r, const std::vector<CertificateReport>& chain, std::string_view what) {
  bool ok = true;
  for (const CertificateReport& c : chain) {
    if (c.status == "revoked") {
      Fail(r, Indication::kTotalFailed, "REVOKED",
           absl::StrCat(Av(what), ": ", c.subject, " was revoked at ",
                        c.revoked_at ? TimeText(*c.revoked_at) : "?", ", before ",
                        TimeText(r.validation_time)));
      ok = false;
    } else if (c.status == "unknown") {
      Fail(r, Indication::kIndeterminate, "TRY_LATER",
           absl::StrCat(Av(what), ": no revocation data for ", c.subject));
      ok = false;
    }
  }
  return ok;
}

}  // namespace

std::string_view IndicationName(Indication indication) {
  switch (indication) {
    case Indication::kTotalPassed:
      return "TOTAL-PASSED";
    case Indication::kTotalFailed:
      return "TOTAL-FAILED";
    case Indication::kIndeterminate:
      return "INDETERMINATE";
  }
  return "INDETERMINATE";
}

absl::StatusOr<Report> VerifyDetached(std::string_view cms_der, std::string_view content_sha256,
                                      const VerifyOptions& options) {
  const std::vector<OsslPtr<X509>> anchors = ParseCertificates(options.trust_anchors_der);
  if (anchors.empty()) return absl::InvalidArgumentError("trust anchors: none");
  Report r;
  r.validation_time = options.now;
  r.level = "B-B";
  auto cms = CmsOf(cms_der);
  auto embedded = cms.ok() ? EmbeddedValidationData(cms_der) : cms.status();
  STACK_OF(CMS_SignerInfo)* signers =
      cms.ok() ? CMS_get0_SignerInfos(cms->get()) : nullptr;  // Owned by cms.
  if (!embedded.ok() || signers == nullptr || sk_CMS_SignerInfo_num(signers) != 1) {
    Fail(r, Indication::kTotalFailed, "FORMAT_FAILURE",
         "not a CMS SignedData with exactly one signer");
    return r;
  }
  ValidationData data = *embedded;
  for (const auto& c : options.extra.certificates_der) data.certificates_der.push_back(c);
  for (const auto& c : options.extra.ocsp_responses_der) data.ocsp_responses_der.push_back(c);
  for (const auto& c : options.extra.crls_der) data.crls_der.push_back(c);
  const std::vector<OsslPtr<X509>> untrusted = ParseCertificates(data.certificates_der);
  const Context ctx{.untrusted = untrusted, .anchors = anchors, .data = data};

  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(signers, 0);
  CMS_set1_signers_certs(cms->get(), nullptr, 0);
  ERR_clear_error();
  X509* signer = nullptr;  // Owned by si.
  X509_ALGOR* digest_alg = nullptr;
  CMS_SignerInfo_get0_algs(si, nullptr, &signer, &digest_alg, nullptr);
  if (signer == nullptr) {
    Fail(r, Indication::kIndeterminate, "NO_SIGNING_CERTIFICATE_FOUND",
         "the signing certificate is not in the signature");
    return r;
  }
  r.signer = SubjectText(signer);

  // The content: messageDigest must be the SHA-256 of what the verifier holds.
  const ASN1_OBJECT* digest_oid = nullptr;
  X509_ALGOR_get0(&digest_oid, nullptr, nullptr, digest_alg);
  const ASN1_OCTET_STRING* md = static_cast<const ASN1_OCTET_STRING*>(CMS_signed_get0_data_by_OBJ(
      si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING));
  const bool digest_ok =
      OBJ_obj2nid(digest_oid) == NID_sha256 && md != nullptr && StringOf(md) == content_sha256;
  const bool signature_ok = CMS_SignerInfo_verify(si) == 1;
  ERR_clear_error();
  r.signature_valid = digest_ok && signature_ok;
  if (!digest_ok) {
    Fail(r, Indication::kTotalFailed, "HASH_FAILURE",
         "the content does not match the signature (changed after signing)");
  }
  if (!signature_ok) {
    Fail(r, Indication::kTotalFailed, "SIG_CRYPTO_FAILURE",
         "the signature value does not verify with the signing certificate's key");
  }
  // ESS signing-certificate-v2 must name the certificate that verifies.
  const ASN1_STRING* ess_seq = static_cast<const ASN1_STRING*>(CMS_signed_get0_data_by_OBJ(
      si, OBJ_nid2obj(NID_id_smime_aa_signingCertificateV2), -3, V_ASN1_SEQUENCE));
  bool ess_ok = false;
  if (ess_seq != nullptr) {
    const unsigned char* p = ASN1_STRING_get0_data(ess_seq);
    OsslPtr<ESS_SIGNING_CERT_V2> ess(
        d2i_ESS_SIGNING_CERT_V2(nullptr, &p, ASN1_STRING_length(ess_seq)));
    OsslPtr<STACK_OF(X509)> only(sk_X509_new_null());
    X509_up_ref(signer);
    sk_X509_push(only.get(), signer);
    ess_ok = ess && OSSL_ESS_check_signing_certs(nullptr, ess.get(), only.get(), 1) == 1;
    ERR_clear_error();
  }
  if (!ess_ok) {
    Fail(r, Indication::kTotalFailed, "SIG_CONSTRAINTS_FAILURE",
         "signing-certificate-v2 is missing or names another certificate");
  }
  r.claimed_signing_time = TimeOf(static_cast<const ASN1_TIME*>(
      CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(NID_pkcs9_signingTime), -3, V_ASN1_ANY)));

  // The signature timestamp: over this signature value, by a TSA chaining to an anchor.
  auto tokens = SignatureTimestampTokens(cms_der);
  if (tokens.ok() && !tokens->empty()) {
    r.level = "B-T";
    const std::string& token_der = tokens->front();
    auto token = ReadTimestampToken(token_der);
    auto token_cms = CmsOf(token_der);
    bool ok = false;
    if (token.ok() && token_cms.ok()) {
      std::vector<OsslPtr<X509>> tsa_pool = ParseCertificates(data.certificates_der);
      const unsigned char* p = Bytes(token_der);
      OsslPtr<PKCS7> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(token_der.size())));
      TS_VERIFY_CTX* vctx = TS_VERIFY_CTX_new();  // Owns what is set into it below.
      const std::string value = StringOf(CMS_SignerInfo_get0_signature(si));
      if (p7 && vctx != nullptr) {
        TS_VERIFY_CTX_set_flags(vctx, TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_DATA);
        TS_VERIFY_CTX_set_store(vctx, StoreOf(anchors, token->gen_time).release());
        TS_VERIFY_CTX_set_certs(vctx, StackOf(tsa_pool).release());
        TS_VERIFY_CTX_set_data(vctx, BIO_new_mem_buf(value.data(), static_cast<int>(value.size())));
        ok = TS_RESP_verify_token(vctx, p7.get()) == 1;
        ERR_clear_error();
      }
      TS_VERIFY_CTX_free(vctx);
      // The TSA's chain and its status, at the time it stamped.
      X509* tsa = nullptr;
      STACK_OF(CMS_SignerInfo)* ts_signers = CMS_get0_SignerInfos(token_cms->get());
      OsslPtr<STACK_OF(X509)> token_certs(CMS_get1_certs(token_cms->get()));
      for (int i = 0; ok && i < sk_X509_num(token_certs.get()); ++i) {
        if (CMS_SignerInfo_cert_cmp(sk_CMS_SignerInfo_value(ts_signers, 0),
                                    sk_X509_value(token_certs.get(), i)) == 0) {
          tsa = sk_X509_value(token_certs.get(), i);
        }
      }
      for (const auto& c : untrusted) {
        if (ok && tsa == nullptr &&
            CMS_SignerInfo_cert_cmp(sk_CMS_SignerInfo_value(ts_signers, 0), c.get()) == 0) {
          tsa = c.get();
        }
      }
      if (ok && tsa != nullptr) {
        r.tsa = SubjectText(tsa);
        auto chain = BuildChain(tsa, untrusted, anchors, token->gen_time);
        if (chain.ok()) {
          r.tsa_chain = ChainStatus(*chain, token->gen_time, ctx);
        } else {
          ok = false;
        }
      }
      ok = ok && tsa != nullptr;
      if (ok && token->gen_time > options.now) {
        ok = false;
        r.problems.push_back("the timestamp is later than the validation time");
      }
    }
    if (ok) {
      r.timestamp_valid = true;
      r.timestamp_time = token->gen_time;
      r.validation_time = token->gen_time;
    } else {
      Fail(r, Indication::kTotalFailed, "TIMESTAMP_FAILURE",
           "the signature timestamp does not verify (imprint, TSA signature or TSA chain)");
    }
  }

  // The signer's chain, at the time the signature is proven to exist.
  auto any_time = BuildChain(signer, untrusted, anchors, std::nullopt);
  auto chain = BuildChain(signer, untrusted, anchors, r.validation_time);
  if (!any_time.ok()) {
    Fail(r, Indication::kIndeterminate, "NO_CERTIFICATE_CHAIN_FOUND",
         std::string(any_time.status().message()));
  } else if (!chain.ok()) {
    Fail(r, Indication::kIndeterminate, "OUT_OF_BOUNDS_NO_POE",
         absl::StrCat(chain.status().message(), " at ", TimeText(r.validation_time)));
    r.chain = ChainStatus(*any_time, r.validation_time, ctx);
  } else {
    r.chain_valid = true;
    r.chain = ChainStatus(*chain, r.validation_time, ctx);
  }
  const bool signer_status = CheckStatuses(r, r.chain, "signer");
  const bool tsa_status = !r.timestamp_valid || CheckStatuses(r, r.tsa_chain, "TSA");
  if (r.timestamp_valid && signer_status && tsa_status &&
      (!embedded->ocsp_responses_der.empty() || !embedded->crls_der.empty())) {
    r.level = "B-LT";
  }
  if (r.problems.empty()) {
    r.indication = Indication::kTotalPassed;
    r.sub_indication.clear();
  }
  return r;
}

}  // namespace qsign::cades
