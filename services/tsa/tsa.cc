#include "services/tsa/tsa.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::tsa {
namespace {

std::string_view FailureName(FailureInfo info) {
  switch (info) {
    case FailureInfo::kBadAlg:
      return "badAlg";
    case FailureInfo::kBadRequest:
      return "badRequest";
    case FailureInfo::kBadDataFormat:
      return "badDataFormat";
    case FailureInfo::kTimeNotAvailable:
      return "timeNotAvailable";
    case FailureInfo::kUnacceptedPolicy:
      return "unacceptedPolicy";
    case FailureInfo::kUnacceptedExtension:
      return "unacceptedExtension";
    case FailureInfo::kSystemFailure:
      return "systemFailure";
  }
  return "systemFailure";
}

// GeneralizedTime with milliseconds, DER style: no trailing zeros in the fraction, none at all
// for a whole second (RFC 3161 2.4.2).
std::string GeneralizedTime(absl::Time t) {
  const int64_t ms = absl::ToUnixMillis(t) % 1000;
  std::string out = absl::FormatTime("%Y%m%d%H%M%S", t, absl::UTCTimeZone());
  if (ms > 0) {
    std::string frac = absl::StrFormat("%03d", ms);
    while (frac.back() == '0') frac.pop_back();
    absl::StrAppend(&out, ".", frac);
  }
  return out + "Z";
}

size_t HashLength(int nid) {
  switch (nid) {
    case NID_sha256:
      return 32;
    case NID_sha384:
      return 48;
    case NID_sha512:
      return 64;
    default:
      return 0;
  }
}

std::string OidText(const ASN1_OBJECT* obj) {
  char buf[128] = {0};
  OBJ_obj2txt(buf, sizeof(buf), obj, 1);
  return buf;
}

hsm::SignParams ParamsFor(hsm::KeyType type) {
  if (hsm::IsEc(type)) {
    return {
        .scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256, .ecdsa_der = true};
  }
  return {.scheme = hsm::SignScheme::kRsaPkcs1, .hash = hsm::HashAlgorithm::kSha256};
}

}  // namespace

TimestampAuthority::TimestampAuthority(hsm::Hsm* hsm, hsm::PublicKey key, TsaStore* store,
                                       const Clock* clock, TsaConfig config)
    : hsm_(hsm), key_(std::move(key)), store_(store), clock_(clock), config_(std::move(config)) {}

void TimestampAuthority::SetCertificate(TsaCertificate certificate) {
  // Tokens carry the issuing CAs, not the root: relying parties hold it as their trust anchor.
  std::erase_if(certificate.chain_der, [](const std::string& der) {
    OsslPtr<X509> cert = ParseCertificate(der);
    return cert == nullptr ||
           X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0;
  });
  auto shared = std::make_shared<const TsaCertificate>(std::move(certificate));
  absl::MutexLock lock(&mu_);
  certificate_ = std::move(shared);
}

bool TimestampAuthority::ready() const {
  absl::MutexLock lock(&mu_);
  return certificate_ != nullptr;
}

TimestampReply TimestampAuthority::Rejection(FailureInfo info, std::string_view text) {
  return {.der = cades::RejectionReply(static_cast<int>(info), text),
          .granted = false,
          .outcome = std::string(FailureName(info))};
}

TimestampReply TimestampAuthority::Respond(std::string_view query_der) {
  const absl::Time start = absl::Now();
  TimestampReply reply = Answer(query_der);
  metrics::Registry& registry = metrics::Registry::Global();
  registry.AddCounter("qsign_tsa_replies_total",
                      "TimeStampResps answered, by outcome (granted or the failInfo).",
                      {{"outcome", reply.outcome}});
  registry.Observe("qsign_tsa_reply_seconds", "Time to answer one TimeStampReq.", {},
                   absl::ToDoubleSeconds(absl::Now() - start));
  return reply;
}

TimestampReply TimestampAuthority::Answer(std::string_view query_der) {
  const unsigned char* p = Bytes(query_der);
  OsslPtr<TS_REQ> req(d2i_TS_REQ(nullptr, &p, static_cast<long>(query_der.size())));
  if (!req || p != Bytes(query_der) + query_der.size()) {
    ERR_clear_error();
    return Rejection(FailureInfo::kBadDataFormat, "not a DER TimeStampReq");
  }
  if (TS_REQ_get_version(req.get()) != 1) {
    return Rejection(FailureInfo::kBadRequest, "version: must be 1");
  }
  TS_MSG_IMPRINT* imprint = TS_REQ_get_msg_imprint(req.get());  // Owned by req.
  const X509_ALGOR* algo = TS_MSG_IMPRINT_get_algo(imprint);
  const ASN1_OBJECT* algo_oid = nullptr;
  int param_type = V_ASN1_UNDEF;
  X509_ALGOR_get0(&algo_oid, &param_type, nullptr, algo);
  const size_t hash_length = HashLength(OBJ_obj2nid(algo_oid));
  if (hash_length == 0 || (param_type != V_ASN1_UNDEF && param_type != V_ASN1_NULL)) {
    return Rejection(FailureInfo::kBadAlg, "messageImprint: SHA-256, SHA-384 or SHA-512");
  }
  const ASN1_OCTET_STRING* message = TS_MSG_IMPRINT_get_msg(imprint);
  if (static_cast<size_t>(ASN1_STRING_length(message)) != hash_length) {
    return Rejection(FailureInfo::kBadDataFormat,
                     "messageImprint: hashedMessage does not fit the hash algorithm");
  }
  OsslPtr<ASN1_OBJECT> policy(OBJ_txt2obj(config_.policy_oid.c_str(), 1));
  if (!policy) return Rejection(FailureInfo::kSystemFailure, "no policy");
  const ASN1_OBJECT* asked = TS_REQ_get_policy_id(req.get());
  if (asked != nullptr && OBJ_cmp(asked, policy.get()) != 0) {
    return Rejection(FailureInfo::kUnacceptedPolicy,
                     absl::StrCat("reqPolicy: this TSA issues under ", config_.policy_oid));
  }
  const STACK_OF(X509_EXTENSION)* exts = TS_REQ_get_exts(req.get());
  if (exts != nullptr && sk_X509_EXTENSION_num(exts) > 0) {
    return Rejection(FailureInfo::kUnacceptedExtension, "extensions: none accepted");
  }
  std::shared_ptr<const TsaCertificate> cert;
  {
    absl::MutexLock lock(&mu_);
    cert = certificate_;
  }
  if (cert == nullptr) {
    return Rejection(FailureInfo::kTimeNotAvailable, "the TSA has no certificate yet");
  }
  auto signer_cert = ParseCertificate(cert->certificate_der);
  if (!signer_cert) return Rejection(FailureInfo::kSystemFailure, "TSA certificate");

  const absl::Time now = clock_->Now();
  const absl::Time gen_time = absl::FromUnixMillis(absl::ToUnixMillis(now));
  const ASN1_INTEGER* nonce = TS_REQ_get_nonce(req.get());  // Owned by req.
  auto serial = store_->IssueSerial(
      {.gen_time = gen_time,
       .hash_oid = OidText(algo_oid),
       .imprint =
           std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(message)), hash_length),
       .policy_oid = config_.policy_oid,
       .certificate_serial_hex = cert->serial_hex,
       .has_nonce = nonce != nullptr});
  if (!serial.ok()) {
    Log(LogLevel::kError, "tsa", "serial number unavailable",
        {{"status", serial.status().ToString()}});
    return Rejection(FailureInfo::kSystemFailure, "try again later");
  }

  OsslPtr<TS_TST_INFO> tst(TS_TST_INFO_new());
  OsslPtr<ASN1_INTEGER> serial_number(ASN1_INTEGER_new());
  OsslPtr<ASN1_STRING> time(ASN1_GENERALIZEDTIME_new());
  OsslPtr<TS_ACCURACY> accuracy(TS_ACCURACY_new());
  OsslPtr<GENERAL_NAME> tsa_name(GENERAL_NAME_new());
  const std::string when = GeneralizedTime(gen_time);
  bool ok = tst && serial_number && time && accuracy && tsa_name &&
            TS_TST_INFO_set_version(tst.get(), 1) == 1 &&
            TS_TST_INFO_set_policy_id(tst.get(), policy.get()) == 1 &&
            TS_TST_INFO_set_msg_imprint(tst.get(), imprint) == 1 &&
            ASN1_INTEGER_set_int64(serial_number.get(), *serial) == 1 &&
            TS_TST_INFO_set_serial(tst.get(), serial_number.get()) == 1 &&
            ASN1_GENERALIZEDTIME_set_string(time.get(), when.c_str()) == 1 &&
            TS_TST_INFO_set_time(tst.get(), time.get()) == 1;
  const int64_t accuracy_ms = absl::ToInt64Milliseconds(config_.accuracy);
  if (ok && accuracy_ms / 1000 > 0) {
    OsslPtr<ASN1_INTEGER> seconds(ASN1_INTEGER_new());
    ok = seconds && ASN1_INTEGER_set_int64(seconds.get(), accuracy_ms / 1000) == 1 &&
         TS_ACCURACY_set_seconds(accuracy.get(), seconds.get()) == 1;
  }
  if (ok && accuracy_ms % 1000 > 0) {
    OsslPtr<ASN1_INTEGER> millis(ASN1_INTEGER_new());
    ok = millis && ASN1_INTEGER_set_int64(millis.get(), accuracy_ms % 1000) == 1 &&
         TS_ACCURACY_set_millis(accuracy.get(), millis.get()) == 1;
  }
  ok = ok && TS_TST_INFO_set_accuracy(tst.get(), accuracy.get()) == 1;
  if (ok && nonce != nullptr) ok = TS_TST_INFO_set_nonce(tst.get(), nonce) == 1;
  if (ok) {
    // tsa: the TSA certificate's subject, so a verifier can match the signer (RFC 3161 2.4.2).
    X509_NAME* subject = X509_NAME_dup(X509_get_subject_name(signer_cert.get()));
    ok = subject != nullptr;
    if (ok) GENERAL_NAME_set0_value(tsa_name.get(), GEN_DIRNAME, subject);  // Now owns subject.
    ok = ok && TS_TST_INFO_set_tsa(tst.get(), tsa_name.get()) == 1;
  }
  const std::string tst_der = ok ? ToDer(tst.get(), i2d_TS_TST_INFO) : "";
  if (tst_der.empty()) {
    ERR_clear_error();
    Log(LogLevel::kError, "tsa", "TSTInfo encoding failed");
    return Rejection(FailureInfo::kSystemFailure, "try again later");
  }

  const bool cert_req = TS_REQ_get_cert_req(req.get()) != 0;
  auto token = cades::Sign({.content_sha256 = cades::Sha256(tst_der),
                            .signer_cert_der = cert->certificate_der,
                            .chain_der = cert->chain_der,
                            .signing_time = gen_time,
                            .content_type_oid = cades::kIdCtTstInfo,
                            .encapsulated_content = tst_der,
                            .include_certificates = cert_req},
                           [this](const std::string& digest) {
                             return hsm_->SignDigest(config_.key_id, ParamsFor(key_.type), digest);
                           });
  if (!token.ok()) {
    Log(LogLevel::kError, "tsa", "signing the token failed",
        {{"status", token.status().ToString()}, {"serial", std::to_string(*serial)}});
    return Rejection(FailureInfo::kSystemFailure, "try again later");
  }
  return {.der = cades::GrantedReply(*token), .granted = true, .outcome = "granted"};
}

}  // namespace qsign::tsa
