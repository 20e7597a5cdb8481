#include "services/lifecycle/ca/ocsp.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/ca/der.h"

namespace qsign::lifecycle {
namespace {

std::string Digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) return "";
  return std::string(reinterpret_cast<char*>(out), len);
}

// The subjectPublicKey BIT STRING's bytes of a certificate (what CertID's issuerKeyHash and
// ResponderID's byKey hash).
std::string PublicKeyBits(const X509* cert) {
  const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(cert);
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(bits)),
                     static_cast<size_t>(ASN1_STRING_length(bits)));
}

std::string AsString(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string SerialHexOf(const ASN1_INTEGER* serial) {
  OsslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn == nullptr || BN_is_negative(bn.get())) return "";
  OsslPtr<char> hex(BN_bn2hex(bn.get()));
  return hex == nullptr ? "" : absl::AsciiStrToUpper(hex.get());
}

std::string CertStatusDer(const CertStatus& s) {
  switch (s.kind) {
    case CertStatus::Kind::kGood:
      return der::Tlv(der::ContextPrimitive(0), "");
    case CertStatus::Kind::kRevoked: {
      std::string info = der::GeneralizedTime(s.revoked_at);
      if (s.reason != 0) info += der::Explicit(0, der::Enumerated(s.reason));
      return der::Tlv(der::ContextConstructed(1), info);
    }
    case CertStatus::Kind::kUnknown:
      break;
  }
  return der::Tlv(der::ContextPrimitive(2), "");
}

}  // namespace

OcspResponder::OcspResponder(const CaSet* cas, CertStatusSource* source, const Clock* clock,
                             OcspConfig config)
    : cas_(cas), source_(source), clock_(clock), config_(config) {
  for (const Ca* ca : {&cas->qualified(), &cas->device()}) {
    const std::string name = ToDer(X509_get_subject_name(ca->cert()), i2d_X509_NAME);
    const std::string key = PublicKeyBits(ca->cert());
    for (auto [nid, md] :
         {std::pair{NID_sha1, EVP_sha1()}, std::pair{NID_sha256, EVP_sha256()},
          std::pair{NID_sha384, EVP_sha384()}, std::pair{NID_sha512, EVP_sha512()}}) {
      issuers_.push_back({ca, nid, Digest(md, name), Digest(md, key)});
    }
  }
}

std::string OcspResponder::ErrorResponse(OcspResponseStatus status) {
  return der::Sequence({der::Enumerated(static_cast<int>(status))});
}

std::optional<std::string> OcspResponder::CachedResponse(const std::string& key, absl::Time now) {
  const uint64_t generation = source_->Generation();
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(key);
  if (it != cache_.end() && it->second.generation == generation &&
      now - it->second.produced_at < config_.cache_ttl) {
    return it->second.response;
  }
  return std::nullopt;
}

std::optional<std::string> OcspResponder::CachedAnswer(std::string_view request_der) {
  if (config_.cache_ttl <= absl::ZeroDuration()) return std::nullopt;
  const uint64_t generation = source_->Generation();
  const absl::Time now = clock_->Now();
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_request_.find(Av(request_der));
  if (it != by_request_.end() && it->second.generation == generation &&
      now - it->second.produced_at < config_.cache_ttl) {
    return it->second.response;
  }
  return std::nullopt;
}

bool OcspResponder::TakeSignature(absl::Time now) {
  if (config_.signatures_per_second <= 0) return true;
  const double capacity = config_.signatures_per_second;
  absl::MutexLock lock(&mu_);
  if (budget_at_ == absl::InfinitePast()) {
    budget_ = capacity;
  } else if (now > budget_at_) {
    budget_ = std::min(capacity, budget_ + absl::ToDoubleSeconds(now - budget_at_) * capacity);
  }
  budget_at_ = std::max(budget_at_, now);
  if (budget_ < 1) return false;
  budget_ -= 1;
  return true;
}

std::string OcspResponder::Respond(std::string_view request_der) {
  const unsigned char* p = Bytes(request_der);
  OsslPtr<OCSP_REQUEST> req(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(request_der.size())));
  if (req == nullptr || p != Bytes(request_der) + request_der.size()) {
    ERR_clear_error();
    return ErrorResponse(OcspResponseStatus::kMalformedRequest);
  }
  const bool caching = config_.cache_ttl > absl::ZeroDuration();
  const bool one = OCSP_request_onereq_count(req.get()) == 1;
  // Cacheable: one certificate, no extensions (a nonce makes every response unique).
  const bool cacheable = caching && one && OCSP_REQUEST_get_ext_count(req.get()) == 0;
  const std::string key =
      one ? ToDer(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req.get(), 0)), i2d_OCSP_CERTID)
          : "";
  const uint64_t generation = source_->Generation();
  const absl::Time now = clock_->Now();
  if (cacheable) {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.generation == generation &&
        now - it->second.produced_at < config_.cache_ttl) {
      // Another encoding of a cached request, or the first since a restart of by_request_.
      if (by_request_.size() >= config_.cache_max_entries) by_request_.clear();
      by_request_.insert_or_assign(std::string(request_der), it->second);
      return it->second.response;
    }
  }
  if (!TakeSignature(now)) {
    // Out of budget: the HSM is for citizens' signatures first.
    if (one && caching) {
      if (auto cached = CachedResponse(key, now)) {
        metrics::Registry::Global().AddCounter(
            "qsign_ocsp_over_budget_total",
            "OCSP requests past the signature budget, by answer (cached nonce-less or tryLater).",
            {{"answer", "cached"}});
        return *std::move(cached);
      }
    }
    metrics::Registry::Global().AddCounter(
        "qsign_ocsp_over_budget_total",
        "OCSP requests past the signature budget, by answer (cached nonce-less or tryLater).",
        {{"answer", "try_later"}});
    return ErrorResponse(OcspResponseStatus::kTryLater);
  }
  bool reusable = false;
  std::string response = Build(req.get(), &reusable);
  // Errors may be transient and "unknown" may be a certificate being issued right now.
  if (cacheable && reusable) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= config_.cache_max_entries) cache_.clear();
    if (by_request_.size() >= config_.cache_max_entries) by_request_.clear();
    cache_[key] = Cached{.response = response, .produced_at = now, .generation = generation};
    by_request_.insert_or_assign(std::string(request_der), cache_[key]);
  }
  return response;
}

std::string OcspResponder::Build(const OCSP_REQUEST* request, bool* cacheable) {
  *cacheable = false;
  // OpenSSL 3.0's OCSP getters take non-const requests; nothing here modifies it.
  OCSP_REQUEST* req = const_cast<OCSP_REQUEST*>(request);
  const int n = OCSP_request_onereq_count(req);
  if (n <= 0 || n > config_.max_requests) {
    return ErrorResponse(OcspResponseStatus::kMalformedRequest);
  }

  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_->Now()));
  const Ca* signing_ca = nullptr;
  bool all_known = true;
  std::vector<std::string> single_responses;
  for (int i = 0; i < n; ++i) {
    OCSP_CERTID* cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
    ASN1_OCTET_STRING* name_hash = nullptr;
    ASN1_OBJECT* md = nullptr;
    ASN1_OCTET_STRING* key_hash = nullptr;
    ASN1_INTEGER* serial = nullptr;
    if (cid == nullptr || OCSP_id_get0_info(&name_hash, &md, &key_hash, &serial, cid) != 1) {
      return ErrorResponse(OcspResponseStatus::kMalformedRequest);
    }
    const int hash_nid = OBJ_obj2nid(md);
    const Ca* ca = nullptr;
    for (const IssuerHashes& h : issuers_) {
      if (h.hash_nid == hash_nid && h.name_hash == AsString(name_hash) &&
          h.key_hash == AsString(key_hash)) {
        ca = h.ca;
        break;
      }
    }
    CertStatus status;  // Unknown unless one of our CAs issued it.
    const std::string serial_hex = SerialHexOf(serial);
    if (ca != nullptr && !serial_hex.empty()) {
      if (signing_ca == nullptr) signing_ca = ca;
      // One responder signs the whole response: another CA's certificates are unknown to it.
      if (ca == signing_ca) {
        auto looked_up = source_->Status(ca->name(), serial_hex);
        if (!looked_up.ok()) {
          Log(LogLevel::kError, "ocsp", "status lookup failed",
              {{"status", looked_up.status().ToString()}});
          return ErrorResponse(looked_up.status().code() == absl::StatusCode::kUnavailable
                                   ? OcspResponseStatus::kTryLater
                                   : OcspResponseStatus::kInternalError);
        }
        status = *looked_up;
      }
    }
    if (status.kind == CertStatus::Kind::kUnknown) all_known = false;
    single_responses.push_back(der::Sequence({
        ToDer(cid, i2d_OCSP_CERTID),
        CertStatusDer(status),
        der::GeneralizedTime(now),
        der::Explicit(0, der::GeneralizedTime(now + config_.validity)),
    }));
  }
  if (signing_ca == nullptr) return ErrorResponse(OcspResponseStatus::kUnauthorized);
  const Ca* responder = cas_->ResponderFor(signing_ca->name());
  if (responder == nullptr) return ErrorResponse(OcspResponseStatus::kUnauthorized);

  std::string extensions;
  const int nonce_at = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1);
  if (nonce_at >= 0) {
    // Echoed as sent (RFC 6960 4.4.1), extnValue and all.
    extensions = der::Explicit(
        1, der::Sequence({ToDer(OCSP_REQUEST_get_ext(req, nonce_at), i2d_X509_EXTENSION)}));
  }
  const std::string response_data = der::Sequence({
      // responderID byKey [2]: SHA-1 of the responder's public key bits.
      der::Explicit(2, der::OctetString(Digest(EVP_sha1(), PublicKeyBits(responder->cert())))),
      der::GeneralizedTime(now),
      der::SequenceOf(single_responses),
      extensions,
  });
  auto basic = responder->key().SignStructure(
      response_data, der::Explicit(0, der::Sequence({responder->cert_der()})));
  if (!basic.ok()) {
    Log(LogLevel::kError, "ocsp", "signing failed", {{"status", basic.status().ToString()}});
    return ErrorResponse(OcspResponseStatus::kTryLater);
  }
  *cacheable = all_known;
  return der::Sequence({
      der::Enumerated(static_cast<int>(OcspResponseStatus::kSuccessful)),
      der::Explicit(0, der::Sequence({der::Oid(oid::kOcspBasic), der::OctetString(*basic)})),
  });
}

}  // namespace qsign::lifecycle
