#include "common/cades/chain.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/cades/der.h"

namespace qsign::cades {

std::vector<OsslPtr<X509>> ParseCertificates(const std::vector<std::string>& ders) {
  std::vector<OsslPtr<X509>> out;
  for (const std::string& der : ders) {
    OsslPtr<X509> cert = ParseCertificate(der);
    if (cert) out.push_back(std::move(cert));
  }
  ERR_clear_error();
  return out;
}

absl::StatusOr<std::vector<OsslPtr<X509>>> BuildChain(X509* leaf,
                                                      const std::vector<OsslPtr<X509>>& untrusted,
                                                      const std::vector<OsslPtr<X509>>& anchors,
                                                      std::optional<absl::Time> at) {
  OsslPtr<X509_STORE> store(X509_STORE_new());
  OsslPtr<STACK_OF(X509)> chain_pool(sk_X509_new_null());
  OsslPtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!store || !chain_pool || !ctx) return OpenSslError("X509_STORE");
  for (const auto& a : anchors) X509_STORE_add_cert(store.get(), a.get());
  for (const auto& c : untrusted) {
    X509_up_ref(c.get());
    sk_X509_push(chain_pool.get(), c.get());  // The stack owns the reference.
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain_pool.get()) != 1) {
    return OpenSslError("X509_STORE_CTX_init");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());  // Owned by ctx.
  if (at.has_value()) {
    X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(*at));
  } else {
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
  }
  // Key usage and policies are judged by the caller (signature or timestamp).
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_ANY);
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat("no valid chain to the trust anchor for ",
                                                      SubjectText(leaf), ": ",
                                                      X509_verify_cert_error_string(err)));
  }
  std::vector<OsslPtr<X509>> out;
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());  // Owned by ctx.
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    X509* c = sk_X509_value(chain, i);
    X509_up_ref(c);
    out.emplace_back(c);
  }
  return out;
}

std::string SubjectText(const X509* cert) {
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                     XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  return BioContents(bio.get());
}

std::string SerialText(const X509* cert) {
  OsslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  OsslPtr<char> hex(BN_bn2hex(bn.get()));
  return hex ? absl::AsciiStrToUpper(hex.get()) : "";
}

}  // namespace qsign::cades
