// The consent app, simulated: a real gRPC client of qsign.v1.Consent holding a P-256 device key
// (OpenSSL, in memory). It enrols, keeps WatchRequests open on a thread (reconnecting with a
// fresh challenge when the stream drops, until the device is deactivated), and approves or
// denies requests with a PIN, signing the statement it received. Used by tests, the CLI and
// scripts/run's demo. Like a real app, it shows and signs the statement, and refuses one whose
// decoded content does not match the request it came with.
#ifndef QSIGN_CONSENT_APP_SIMULATOR_H_
#define QSIGN_CONSENT_APP_SIMULATOR_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "consent/statement.h"
#include "qsign/v1/consent.grpc.pb.h"

namespace qsign::consent {

class ConsentAppSimulator {
 public:
  // A new app with a fresh P-256 key, talking to the consent service on `channel`.
  static absl::StatusOr<std::unique_ptr<ConsentAppSimulator>> New(
      std::shared_ptr<grpc::ChannelInterface> channel);
  // An app that already exists (enrolled in an earlier process): its device key as an
  // unencrypted PKCS#8 PEM (PrivateKeyPem), and the device and account it was enrolled as
  // (empty when not yet enrolled).
  static absl::StatusOr<std::unique_ptr<ConsentAppSimulator>> FromPrivateKeyPem(
      std::shared_ptr<grpc::ChannelInterface> channel, std::string_view private_key_pem,
      std::string device_id = "", std::string account_id = "");
  ~ConsentAppSimulator();

  // The device key as unencrypted PKCS#8 PEM, for a simulated app that persists itself (the
  // CLI keeps it in a 0600 file). A secret.
  absl::StatusOr<std::string> PrivateKeyPem() const;

  // The device key, SubjectPublicKeyInfo DER.
  const std::string& public_key_spki() const { return spki_der_; }
  // ECDSA P-256 over SHA-256(data), DER: what the device key signs.
  absl::StatusOr<std::string> Sign(std::string_view data) const;

  // EnrollDevice; on success the app knows its device id, account and certificate chain.
  absl::Status Enroll(std::string_view activation_code, std::string_view device_name,
                      std::string_view pin, std::string_view push_token = "");
  const std::string& device_id() const { return device_id_; }
  const std::string& account_id() const { return account_id_; }
  const std::vector<std::string>& certificate_chain() const { return certificate_chain_; }

  // Opens WatchRequests (GetChallenge, sign, open) and keeps reading on a thread. Answers once
  // the stream is open, or the error that kept it from opening.
  absl::Status StartWatching();
  // Closes the stream and joins the thread.
  void StopWatching();
  // The next request received (each request id once), waiting up to `timeout`.
  // DEADLINE_EXCEEDED when none came; the stream's final status when it ended.
  absl::StatusOr<qsign::v1::ConsentRequest> NextRequest(absl::Duration timeout);
  // How the stream ended; OK while it is open.
  absl::Status watch_status() const;

  // A WatchRequests request for this device: a fresh GetChallenge, signed with the device key
  // (StartWatching opens its stream with it; so does a load generator that reads the stream
  // itself).
  absl::StatusOr<qsign::v1::WatchRequestsRequest> SignedWatchRequest();

  // When set, every request that arrives on the stream is decided at once with this PIN
  // (load tests, demos); outcomes are counted.
  void SetAutoDecision(std::optional<Decision> decision, std::string pin = "");
  int auto_decisions() const;

  // What the app checks before it shows and signs a request: its statement decodes and says
  // what the request message says. FAILED_PRECONDITION when not. (Approve and Deny check it;
  // a load generator that drives the calls itself does too.)
  static absl::Status CheckStatement(const qsign::v1::ConsentRequest& request);

  // Decides `request` after checking its statement: a fresh challenge (GetApprovalChallenge),
  // then the signed approval message (statement, decision, challenge) with the PIN.
  absl::StatusOr<qsign::v1::ApproveResponse> Approve(const qsign::v1::ConsentRequest& request,
                                                     std::string_view pin);
  absl::StatusOr<qsign::v1::ApproveResponse> Deny(const qsign::v1::ConsentRequest& request);
  // The raw call, for tests that forge: a fresh challenge, then signs `statement` as given.
  absl::StatusOr<qsign::v1::ApproveResponse> Decide(std::string_view request_id,
                                                    std::string_view statement, Decision decision,
                                                    std::string_view pin);
  // GetApprovalChallenge for `request_id` (empty: for a PIN operation) as this device.
  absl::StatusOr<std::string> GetApprovalChallenge(std::string_view request_id);
  // The Approve request SendApprove sends (for a load generator that makes the call itself).
  static qsign::v1::ApproveRequest ApproveRequestFor(std::string_view request_id,
                                                     std::string_view device_id,
                                                     Decision decision, std::string_view pin,
                                                     std::string_view challenge,
                                                     std::string_view signature);
  // The raw call with a caller-made challenge and signature.
  absl::StatusOr<qsign::v1::ApproveResponse> SendApprove(std::string_view request_id,
                                                         std::string_view device_id,
                                                         Decision decision, std::string_view pin,
                                                         std::string_view challenge,
                                                         std::string_view signature);

  // The user changes the PIN (old PIN counted as an attempt); the server's answer.
  absl::StatusOr<qsign::v1::ChangePinResponse> ChangePin(std::string_view old_pin,
                                                         std::string_view new_pin);
  // The user sets a new PIN after a registration officer's UnblockPin.
  absl::Status ResetPin(std::string_view new_pin);

 private:
  struct Key;
  ConsentAppSimulator(const std::shared_ptr<grpc::ChannelInterface>& channel,
                      std::unique_ptr<Key> key, std::string spki_der);
  void ReadLoop(std::unique_ptr<grpc::ClientContext> ctx,
                std::unique_ptr<grpc::ClientReader<qsign::v1::ConsentRequest>> reader);
  absl::StatusOr<std::unique_ptr<grpc::ClientReader<qsign::v1::ConsentRequest>>> OpenStream(
      grpc::ClientContext* ctx);

  std::unique_ptr<qsign::v1::Consent::Stub> stub_;
  std::unique_ptr<Key> key_;
  std::string spki_der_;
  std::string device_id_;
  std::string account_id_;
  std::vector<std::string> certificate_chain_;

  mutable absl::Mutex mu_;
  std::deque<qsign::v1::ConsentRequest> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* stream_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;  // Owned by the thread.
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status watch_status_ ABSL_GUARDED_BY(mu_);
  std::optional<Decision> auto_decision_ ABSL_GUARDED_BY(mu_);
  std::string auto_pin_ ABSL_GUARDED_BY(mu_);
  int auto_decisions_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace qsign::consent

#endif  // QSIGN_CONSENT_APP_SIMULATOR_H_
