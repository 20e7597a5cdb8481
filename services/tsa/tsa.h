// The timestamp authority's logic (RFC 3161, ETSI EN 319 422), no transport: a DER
// TimeStampReq in, a DER TimeStampResp out, always — a query that cannot be served is answered
// with a PKIStatus rejection and its failInfo, never an error or a crash. Tokens are CMS
// SignedData over TSTInfo (common/cades), signed with the TSA key in the HSM; serial numbers
// come from PostgreSQL and are journalled with each token.
#ifndef QSIGN_SERVICES_TSA_TSA_H_
#define QSIGN_SERVICES_TSA_TSA_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "hsm/hsm.h"
#include "services/tsa/tsa_store.h"

namespace qsign::tsa {

// The largest TimeStampReq accepted (HTTP body, gRPC field); a SHA-512 query is ~100 bytes.
inline constexpr size_t kMaxQueryBytes = 16 * 1024;

struct TsaConfig {
  std::string key_id = "qsign-tsa-1";          // The TSA key in the HSM.
  std::string policy_oid = "0.4.0.2023.1.1";   // TSTInfo.policy; other reqPolicy is refused.
  absl::Duration accuracy = absl::Seconds(1);  // TSTInfo.accuracy.
};

// PKIFailureInfo bits (RFC 3161 2.4.2) the TSA answers with.
enum class FailureInfo {
  kBadAlg = 0,
  kBadRequest = 2,
  kBadDataFormat = 5,
  kTimeNotAvailable = 14,
  kUnacceptedPolicy = 15,
  kUnacceptedExtension = 16,
  kSystemFailure = 25,
};

struct TimestampReply {
  std::string der;  // DER TimeStampResp.
  bool granted = false;
  std::string outcome;  // "granted" or the failInfo name, for metrics and logs.
};

class TimestampAuthority {
 public:
  // `hsm`, `store` and `clock` are not owned and outlive the authority. `key` is the TSA key's
  // public half (its type fixes the signature scheme).
  TimestampAuthority(hsm::Hsm* hsm, hsm::PublicKey key, TsaStore* store, const Clock* clock,
                     TsaConfig config);

  // The certificate to sign under (lifecycle issued it for the TSA key). Until it is set every
  // query is answered with rejection / timeNotAvailable.
  void SetCertificate(TsaCertificate certificate) ABSL_LOCKS_EXCLUDED(mu_);
  bool ready() const ABSL_LOCKS_EXCLUDED(mu_);
  const hsm::PublicKey& public_key() const { return key_; }
  const TsaConfig& config() const { return config_; }

  // Answers one query. Thread-safe.
  TimestampReply Respond(std::string_view query_der) ABSL_LOCKS_EXCLUDED(mu_);

  // A DER TimeStampResp with status rejection, `info` and `text` (for callers that refuse
  // before the authority sees the query: an oversized HTTP body).
  static TimestampReply Rejection(FailureInfo info, std::string_view text);

 private:
  TimestampReply Answer(std::string_view query_der) ABSL_LOCKS_EXCLUDED(mu_);

  hsm::Hsm* hsm_;
  const hsm::PublicKey key_;
  TsaStore* store_;
  const Clock* clock_;
  const TsaConfig config_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TsaCertificate> certificate_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_TSA_H_
