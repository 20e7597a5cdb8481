#include "services/lifecycle/ca/ocsp.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
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

// der::GeneralizedTime of whole second `t`, formatted once per second per thread and `slot`
// (0: thisUpdate/producedAt, 1: nextUpdate): absl::FormatTime was a tenth of the responder's
// own CPU per signed answer.
const std::string& TimeDer(absl::Time t, int slot) {
  struct Entry {
    int64_t second = std::numeric_limits<int64_t>::min();
    std::string der;
  };
  thread_local Entry cache[2];
  Entry& e = cache[slot];
  const int64_t second = absl::ToUnixSeconds(t);
  if (e.second != second) {
    e.der = der::GeneralizedTime(absl::FromUnixSeconds(second));
    e.second = second;
  }
  return e.der;
}

// The hash algorithms a request's CertID may name: issuers are matched by their name and key
// hashed with each; a request reads in place only with one of these.
struct CertIdHash {
  int nid;
  const EVP_MD* md;
  std::string oid_der;  // The algorithm's OBJECT IDENTIFIER, DER.
};
const std::vector<CertIdHash>& CertIdHashes() {
  static const std::vector<CertIdHash>* const hashes = [] {
    auto* out = new std::vector<CertIdHash>;
    for (auto [nid, md] :
         {std::pair{NID_sha1, EVP_sha1()}, std::pair{NID_sha256, EVP_sha256()},
          std::pair{NID_sha384, EVP_sha384()}, std::pair{NID_sha512, EVP_sha512()}}) {
      out->push_back({nid, md, ToDer(OBJ_nid2obj(nid), i2d_ASN1_OBJECT)});
    }
    return out;
  }();
  return *hashes;
}

// id-pkix-ocsp-nonce (RFC 6960 4.4.1) and id-pkix-ocsp-basic, DER.
const std::string& NonceOidDer() {
  static const std::string* const oid = new std::string(der::Oid("1.3.6.1.5.5.7.48.1.2"));
  return *oid;
}
const std::string& BasicOidDer() {
  static const std::string* const oid = new std::string(der::Oid(oid::kOcspBasic));
  return *oid;
}

// A nonce extension's extnValue holds the nonce as an OCTET STRING (RFC 6960 4.4.1 as RFC 9654
// restates it); older clients put the bytes there bare. Either way 1..kMaxOcspNonceBytes octets.
bool NonceLengthOk(std::string_view extn_value) {
  std::string_view nonce = extn_value;
  auto inner = der::ReadAll(extn_value);
  if (inner.ok() && inner->tag == der::kOctetString) nonce = inner->content;
  return !nonce.empty() && nonce.size() <= kMaxOcspNonceBytes;
}

std::string SingleResponse(std::string_view cert_id_der, const CertStatus& status, absl::Time now,
                           absl::Duration validity) {
  return der::Sequence({
      cert_id_der,
      CertStatusDer(status),
      TimeDer(now, 0),
      der::Explicit(0, TimeDer(now + validity, 1)),
  });
}

}  // namespace

OcspResponder::OcspResponder(const CaSet* cas, CertStatusSource* source, const Clock* clock,
                             OcspConfig config)
    : cas_(cas), source_(source), clock_(clock), config_(config) {
  for (const Ca* ca : {&cas->qualified(), &cas->device()}) {
    const std::string name = ToDer(X509_get_subject_name(ca->cert()), i2d_X509_NAME);
    const std::string key = PublicKeyBits(ca->cert());
    for (const CertIdHash& h : CertIdHashes()) {
      issuers_.push_back({ca, h.nid, h.oid_der, Digest(h.md, name), Digest(h.md, key)});
    }
    ResponderParts parts{.ca = ca, .responder = cas->ResponderFor(ca->name())};
    if (parts.responder != nullptr) {
      parts.responder_id_der = der::Explicit(
          2, der::OctetString(Digest(EVP_sha1(), PublicKeyBits(parts.responder->cert()))));
      parts.certs_der = der::Explicit(0, der::Sequence({parts.responder->cert_der()}));
    }
    responders_.push_back(std::move(parts));
  }
}

const OcspResponder::ResponderParts* OcspResponder::PartsFor(const Ca* ca) const {
  for (const ResponderParts& parts : responders_) {
    if (parts.ca == ca) return parts.responder != nullptr ? &parts : nullptr;
  }
  return nullptr;
}

std::optional<OcspResponder::SimpleRequest> OcspResponder::ParseSimple(
    std::string_view request_der) {
  // OCSPRequest ::= SEQUENCE { tbsRequest, [0] optionalSignature OPTIONAL }
  auto top = der::ReadAll(request_der);
  if (!top.ok() || top->tag != der::kSequence) return std::nullopt;
  auto tbs = der::ReadAll(top->content);  // A signature: the general way.
  if (!tbs.ok() || tbs->tag != der::kSequence) return std::nullopt;
  // TBSRequest ::= SEQUENCE { [0] version DEFAULT v1, [1] requestorName OPTIONAL,
  //                           requestList SEQUENCE OF Request, [2] requestExtensions OPTIONAL }
  std::string_view in = tbs->content;
  auto list = der::Read(in);  // A version or a requestor name: the general way.
  if (!list.ok() || list->tag != der::kSequence) return std::nullopt;
  std::optional<der::Element> extensions;
  if (!in.empty()) {
    auto e = der::ReadAll(in);
    if (!e.ok() || e->tag != der::ContextConstructed(2)) return std::nullopt;
    extensions = *e;
  }
  // Request ::= SEQUENCE { reqCert CertID, [0] singleRequestExtensions OPTIONAL }: exactly one.
  auto request = der::ReadAll(list->content);
  if (!request.ok() || request->tag != der::kSequence) return std::nullopt;
  auto cert_id = der::ReadAll(request->content);
  if (!cert_id.ok() || cert_id->tag != der::kSequence) return std::nullopt;
  // CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }
  std::string_view c = cert_id->content;
  auto alg = der::Read(c);
  auto name_hash = der::Read(c);
  auto key_hash = der::Read(c);
  auto serial = der::Read(c);
  if (!alg.ok() || !name_hash.ok() || !key_hash.ok() || !serial.ok() || !c.empty() ||
      alg->tag != der::kSequence || name_hash->tag != der::kOctetString ||
      key_hash->tag != der::kOctetString || serial->tag != der::kInteger) {
    return std::nullopt;
  }
  std::string_view a = alg->content;
  auto hash_oid = der::Read(a);
  if (!hash_oid.ok() || hash_oid->tag != der::kOid) return std::nullopt;
  // One of the hashes issuers are matched by (others, and malformed OIDs: the general way).
  const std::vector<CertIdHash>& hashes = CertIdHashes();
  if (std::none_of(hashes.begin(), hashes.end(),
                   [&](const CertIdHash& h) { return h.oid_der == hash_oid->encoded; })) {
    return std::nullopt;
  }
  if (!a.empty()) {  // Parameters: NULL or absent.
    auto params = der::ReadAll(a);
    if (!params.ok() || params->tag != der::kNull || !params->content.empty()) return std::nullopt;
  }
  // A positive serial in minimal form (zero, negative or padded ones: the general way).
  std::string_view v = serial->content;
  if (v.empty() || (static_cast<uint8_t>(v[0]) & 0x80) != 0) return std::nullopt;
  if (v[0] == '\0') {
    if (v.size() == 1 || (static_cast<uint8_t>(v[1]) & 0x80) == 0) return std::nullopt;
    v.remove_prefix(1);
  }
  SimpleRequest out{.cert_id_der = cert_id->encoded,
                    .hash_oid_der = hash_oid->encoded,
                    .name_hash = name_hash->content,
                    .key_hash = key_hash->content,
                    .serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(Av(v)))};
  if (extensions.has_value()) {
    // Extensions ::= SEQUENCE OF Extension: exactly one, the nonce, not marked critical.
    auto list_of = der::ReadAll(extensions->content);
    if (!list_of.ok() || list_of->tag != der::kSequence) return std::nullopt;
    auto ext = der::ReadAll(list_of->content);
    if (!ext.ok() || ext->tag != der::kSequence) return std::nullopt;
    std::string_view x = ext->content;
    auto id = der::Read(x);
    auto value = der::Read(x);
    if (!id.ok() || !value.ok() || !x.empty() || id->encoded != NonceOidDer() ||
        value->tag != der::kOctetString) {
      return std::nullopt;
    }
    out.nonce_ext_der = ext->encoded;
    out.nonce_ok = NonceLengthOk(value->content);
  }
  return out;
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
  // The usual shape is read in place; anything else is decoded by OpenSSL.
  const std::optional<SimpleRequest> simple = ParseSimple(request_der);
  OsslPtr<OCSP_REQUEST> req;
  bool one = true;
  bool extensions = false;
  std::string key;  // The request's CertID, DER (one certificate only).
  if (simple.has_value()) {
    if (!simple->nonce_ok) return ErrorResponse(OcspResponseStatus::kMalformedRequest);
    extensions = !simple->nonce_ext_der.empty();
    key = std::string(simple->cert_id_der);
  } else {
    const unsigned char* p = Bytes(request_der);
    req.reset(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(request_der.size())));
    if (req == nullptr || p != Bytes(request_der) + request_der.size()) {
      ERR_clear_error();
      return ErrorResponse(OcspResponseStatus::kMalformedRequest);
    }
    const int nonce_at = OCSP_REQUEST_get_ext_by_NID(req.get(), NID_id_pkix_OCSP_Nonce, -1);
    if (nonce_at >= 0 && !NonceLengthOk(AsString(
                             X509_EXTENSION_get_data(OCSP_REQUEST_get_ext(req.get(), nonce_at))))) {
      return ErrorResponse(OcspResponseStatus::kMalformedRequest);
    }
    one = OCSP_request_onereq_count(req.get()) == 1;
    extensions = OCSP_REQUEST_get_ext_count(req.get()) != 0;
    if (one) {
      key = ToDer(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req.get(), 0)), i2d_OCSP_CERTID);
    }
  }
  const bool caching = config_.cache_ttl > absl::ZeroDuration();
  // Cacheable: one certificate, no extensions (a nonce makes every response unique).
  const bool cacheable = caching && one && !extensions;
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
  std::string response =
      simple.has_value() ? BuildSimple(*simple, &reusable) : Build(req.get(), &reusable);
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
    single_responses.push_back(
        SingleResponse(ToDer(cid, i2d_OCSP_CERTID), status, now, config_.validity));
  }
  if (signing_ca == nullptr) return ErrorResponse(OcspResponseStatus::kUnauthorized);
  const ResponderParts* parts = PartsFor(signing_ca);
  if (parts == nullptr) return ErrorResponse(OcspResponseStatus::kUnauthorized);

  std::string nonce;
  const int nonce_at = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1);
  // Echoed as sent (RFC 6960 4.4.1), extnValue and all.
  if (nonce_at >= 0) nonce = ToDer(OCSP_REQUEST_get_ext(req, nonce_at), i2d_X509_EXTENSION);
  std::optional<std::string> signed_response =
      Sign(*parts, ResponseData(*parts, now, single_responses, nonce));
  if (!signed_response.has_value()) return ErrorResponse(OcspResponseStatus::kTryLater);
  *cacheable = all_known;
  return *std::move(signed_response);
}

std::string OcspResponder::BuildSimple(const SimpleRequest& req, bool* cacheable) {
  *cacheable = false;
  const Ca* ca = nullptr;
  for (const IssuerHashes& h : issuers_) {
    if (h.hash_oid_der == req.hash_oid_der && h.name_hash == req.name_hash &&
        h.key_hash == req.key_hash) {
      ca = h.ca;
      break;
    }
  }
  const ResponderParts* parts = ca == nullptr ? nullptr : PartsFor(ca);
  if (parts == nullptr) return ErrorResponse(OcspResponseStatus::kUnauthorized);
  auto status = source_->Status(ca->name(), req.serial_hex);
  if (!status.ok()) {
    Log(LogLevel::kError, "ocsp", "status lookup failed", {{"status", status.status().ToString()}});
    return ErrorResponse(status.status().code() == absl::StatusCode::kUnavailable
                             ? OcspResponseStatus::kTryLater
                             : OcspResponseStatus::kInternalError);
  }
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_->Now()));
  const std::vector<std::string> single{
      SingleResponse(req.cert_id_der, *status, now, config_.validity)};
  std::optional<std::string> signed_response =
      Sign(*parts, ResponseData(*parts, now, single, req.nonce_ext_der));
  if (!signed_response.has_value()) return ErrorResponse(OcspResponseStatus::kTryLater);
  *cacheable = status->kind != CertStatus::Kind::kUnknown;
  return *std::move(signed_response);
}

std::string OcspResponder::ResponseData(const ResponderParts& parts, absl::Time now,
                                        const std::vector<std::string>& single_responses,
                                        std::string_view nonce_ext_der) const {
  return der::Sequence({
      parts.responder_id_der,
      TimeDer(now, 0),
      der::SequenceOf(single_responses),
      nonce_ext_der.empty() ? std::string() : der::Explicit(1, der::Sequence({nonce_ext_der})),
  });
}

std::optional<std::string> OcspResponder::Sign(const ResponderParts& parts,
                                               std::string_view response_data) const {
  auto basic = parts.responder->key().SignStructure(response_data, parts.certs_der);
  if (!basic.ok()) {
    Log(LogLevel::kError, "ocsp", "signing failed", {{"status", basic.status().ToString()}});
    return std::nullopt;
  }
  return der::Sequence({
      der::Enumerated(static_cast<int>(OcspResponseStatus::kSuccessful)),
      der::Explicit(0, der::Sequence({BasicOidDer(), der::OctetString(*basic)})),
  });
}

}  // namespace qsign::lifecycle
