// RFC 6960 OCSP responder logic: request DER in, response DER out, BasicOCSPResponse signed by
// the delegated responder of the certificate's CA through the HSM. No HTTP here.
#ifndef QSIGN_SERVICES_LIFECYCLE_CA_OCSP_H_
#define QSIGN_SERVICES_LIFECYCLE_CA_OCSP_H_

#include <openssl/ocsp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "services/lifecycle/ca/ca_setup.h"

namespace qsign::lifecycle {

struct CertStatus {
  enum class Kind { kGood, kRevoked, kUnknown };
  Kind kind = Kind::kUnknown;
  absl::Time revoked_at;  // kRevoked only.
  int reason = 0;         // kRevoked only; RFC 5280 CRLReason, 0 = none given.
};

// Where the responder learns a certificate's status.
class CertStatusSource {
 public:
  virtual ~CertStatusSource() = default;
  // Status of the certificate `ca_name` issued with this serial (upper-case hex). kUnknown when
  // the CA never issued it.
  virtual absl::StatusOr<CertStatus> Status(std::string_view ca_name,
                                            std::string_view serial_hex) = 0;
  // Changes whenever a status known to this process changes (a revocation here): cached
  // responses from an older generation are not served again.
  virtual uint64_t Generation() const { return 0; }
};

// Longest nonce a request may carry (RFC 9654 2.1: 1 to 128 octets; a request outside that is
// answered malformedRequest).
inline constexpr size_t kMaxOcspNonceBytes = 128;

struct OcspConfig {
  // nextUpdate = thisUpdate + validity: how long a relying party may cache a response.
  absl::Duration validity = absl::Hours(1);
  // Most certificates one request may ask about.
  int max_requests = 16;
  // A signed response to a request without a nonce for one certificate is served again for this
  // long (RFC 5019 style pre-signed responses); 0 disables the cache. A revocation in this
  // process takes effect at once; one made by another replica within this time.
  absl::Duration cache_ttl = absl::Seconds(60);
  size_t cache_max_entries = 100'000;
  // Budget of freshly signed responses (each one an HSM signature on a public port): at most this
  // many per second, with a burst of as many. A request the cache cannot answer (a nonce, several
  // certificates, an unknown serial, a cache miss) takes one. Out of budget, a one-certificate
  // request gets that certificate's cached nonce-less response (its nonce ignored, as RFC 5019
  // allows), anything else tryLater. 0: unlimited.
  int signatures_per_second = 100;
};

// OCSPResponseStatus values (RFC 6960 4.2.1).
enum class OcspResponseStatus {
  kSuccessful = 0,
  kMalformedRequest = 1,
  kInternalError = 2,
  kTryLater = 3,
  kUnauthorized = 6,
};

class OcspResponder {
 public:
  // None of the pointers is owned; all must outlive the responder.
  OcspResponder(const CaSet* cas, CertStatusSource* source, const Clock* clock,
                OcspConfig config = {});

  // Always a DER OCSPResponse: successful (a BasicOCSPResponse signed by the responder of the
  // first request's CA, the request's nonce echoed, good / revoked / unknown per certificate),
  // malformedRequest for anything that does not parse, unauthorized when no certificate asked
  // about is from our CAs, internalError / tryLater when the store or the HSM fails.
  std::string Respond(std::string_view request_der);

  // The answer Respond would give from its cache, found by the request's exact bytes without
  // decoding them (a request Respond answered before and could cache: one certificate, no
  // nonce), or nullopt. Never signs, never waits for the status source: the HTTP listener calls
  // it on its I/O thread.
  std::optional<std::string> CachedAnswer(std::string_view request_der);

  // The bare error response.
  static std::string ErrorResponse(OcspResponseStatus status);

  // Whether Respond reads this request in place (one certificate, at most a nonce: what nearly
  // every client sends) rather than through OpenSSL's decoder. For tests and benches.
  static bool ReadsInPlace(std::string_view request_der) {
    return ParseSimple(request_der).has_value();
  }

 private:
  struct IssuerHashes {
    const Ca* ca;
    int hash_nid;
    std::string hash_oid_der;  // The hash algorithm's OBJECT IDENTIFIER, DER.
    std::string name_hash;
    std::string key_hash;
  };
  // What every response of one CA's delegated responder carries, encoded once.
  struct ResponderParts {
    const Ca* ca = nullptr;         // The issuing CA.
    const Ca* responder = nullptr;  // Its delegated responder; nullptr: none.
    std::string responder_id_der;   // [2] EXPLICIT byKey: SHA-1 of the responder's key bits.
    std::string certs_der;          // [0] EXPLICIT SEQUENCE { responder certificate }.
  };
  // A request in the shape nearly every client sends (openssl, browsers, RFC 5019 clients): one
  // CertID, no requestor name, no signature, no per-certificate extensions, and no request
  // extension but a nonce. Views into the request bytes.
  struct SimpleRequest {
    std::string_view cert_id_der;  // The CertID as received (DER, so as OpenSSL re-encodes it).
    std::string_view hash_oid_der;
    std::string_view name_hash;
    std::string_view key_hash;
    std::string serial_hex;          // Upper-case hex, as SerialHexOf gives it.
    std::string_view nonce_ext_der;  // The whole nonce Extension; empty without one.
    bool nonce_ok = true;            // The nonce is 1..kMaxOcspNonceBytes octets.
  };

  struct Cached {
    std::string response;
    absl::Time produced_at;
    uint64_t generation = 0;
  };
  // `cacheable` is set when the answer is successful and every status in it known.
  std::string Build(const OCSP_REQUEST* req, bool* cacheable);
  // The same answer as Build for a SimpleRequest, without decoding the request into OpenSSL
  // objects: the response is spliced from the parts encoded once.
  std::string BuildSimple(const SimpleRequest& req, bool* cacheable);
  // The request in the simple shape, or nullopt (then Respond decodes it with OpenSSL). Strict
  // DER only, so whatever it accepts OpenSSL's decoder accepts too and re-encodes to the same
  // bytes (ocsp_fuzz checks that); anything else goes the general way.
  static std::optional<SimpleRequest> ParseSimple(std::string_view request_der);
  // The ResponseData of a one-certificate answer, DER.
  std::string ResponseData(const ResponderParts& parts, absl::Time now,
                           const std::vector<std::string>& single_responses,
                           std::string_view nonce_ext_der) const;
  // The signed OCSPResponse around `response_data`; nullopt (logged) when the HSM fails.
  std::optional<std::string> Sign(const ResponderParts& parts,
                                  std::string_view response_data) const;
  const ResponderParts* PartsFor(const Ca* ca) const;
  // The cached response under `key`, if fresh.
  std::optional<std::string> CachedResponse(const std::string& key, absl::Time now);
  // Takes one signature from the budget; false when it is spent.
  bool TakeSignature(absl::Time now);

  const CaSet* cas_;          // Not owned.
  CertStatusSource* source_;  // Not owned.
  const Clock* clock_;        // Not owned.
  const OcspConfig config_;
  std::vector<IssuerHashes> issuers_;
  std::vector<ResponderParts> responders_;
  absl::Mutex mu_;
  // Key: the request's CertID, DER.
  absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
  // The same answers by the exact request bytes (CachedAnswer).
  absl::flat_hash_map<std::string, Cached> by_request_ ABSL_GUARDED_BY(mu_);
  double budget_ ABSL_GUARDED_BY(mu_) = 0;  // Signatures left; refilled by the second.
  absl::Time budget_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_CA_OCSP_H_
