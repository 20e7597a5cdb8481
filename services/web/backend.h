// What the web front ends call: the identity, consent, lifecycle and signer services over gRPC,
// wherever they run. Every call carries the caller's own credential (the user's session token,
// the officer's credential) or none (the consent app, whose calls carry device signatures), so
// that the services check the web's users exactly as they check the CLI's: the web layer adds no
// power of its own.
#ifndef QSIGN_SERVICES_WEB_BACKEND_H_
#define QSIGN_SERVICES_WEB_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/daemon/deferred_channel.h"
#include "qsign/v1/consent.pb.h"
#include "qsign/v1/identity.pb.h"
#include "qsign/v1/lifecycle.pb.h"
#include "qsign/v1/signer.pb.h"
#include "services/web/audit_trail.h"

namespace qsign::web {

namespace pb = ::qsign::v1;

// What one look at the consent app's stream found.
struct WatchResult {
  // The device may no longer watch: deactivated (revoke-all, a new enrolment) or unknown.
  bool inactive = false;
  // Requests not in `known`, in the order the stream sent them.
  std::vector<pb::ConsentRequest> requests;
};

// Whom one call is made for.
struct Caller {
  // The whole authorization metadata value ("Bearer ...", "Operator ...") or empty.
  std::string_view auth;
  // The browser's address (the web's ClientAddressResolver over the HTTP request), sent as
  // metadata kForwardedFor: the services' per-address limits count browsers, not the web.
  std::string_view address;
};

// The gRPC metadata key the browser's address travels in. The services believe it only from
// peers in their ServerConfig.client_address.trusted_proxies (header "x-forwarded-for").
inline constexpr std::string_view kForwardedFor = "x-forwarded-for";

class Backend {
 public:
  Backend(std::shared_ptr<const daemon::DeferredChannel> identity,
          std::shared_ptr<const daemon::DeferredChannel> consent,
          std::shared_ptr<const daemon::DeferredChannel> lifecycle,
          std::shared_ptr<const daemon::DeferredChannel> signer, absl::Duration timeout);
  ~Backend();

  absl::StatusOr<pb::RegisterAccountResponse> RegisterAccount(
      const Caller& caller, const pb::RegisterAccountRequest& req);
  absl::StatusOr<pb::Account> ConfirmRegistration(const Caller& caller,
                                                  const pb::ConfirmRegistrationRequest& req);
  absl::StatusOr<pb::StartLoginResponse> StartLogin(const Caller& caller,
                                                    const pb::StartLoginRequest& req);
  absl::StatusOr<pb::AwaitLoginResponse> AwaitLogin(const Caller& caller,
                                                    const pb::AwaitLoginRequest& req);
  absl::Status Logout(const Caller& caller);
  absl::StatusOr<pb::Account> GetAccount(const Caller& caller, const pb::GetAccountRequest& req);
  absl::StatusOr<pb::Account> CorrectIdentity(const Caller& caller,
                                              const pb::CorrectIdentityRequest& req);
  // `source`'s ListAccountAudit (identity's, lifecycle's or consent's records of the account).
  absl::StatusOr<pb::ListAccountAuditResponse> ListAccountAudit(
      AuditSource source, const Caller& caller, const pb::ListAccountAuditRequest& req);
  absl::StatusOr<pb::ProofIdentityResponse> ProofIdentity(const Caller& caller,
                                                          const pb::ProofIdentityRequest& req);

  absl::StatusOr<pb::GetStatusResponse> GetStatus(const Caller& caller,
                                                  const pb::GetStatusRequest& req);
  absl::StatusOr<pb::ListCertificatesResponse> ListCertificates(
      const Caller& caller, const pb::ListCertificatesRequest& req);
  absl::StatusOr<pb::Contract> GetContract(const Caller& caller, const pb::GetContractRequest& req);
  absl::StatusOr<pb::ContractAcceptance> AcceptContract(const Caller& caller,
                                                        const pb::AcceptContractRequest& req);
  absl::StatusOr<pb::Certificate> Issue(const Caller& caller, const pb::IssueRequest& req);
  absl::StatusOr<pb::Certificate> Renew(const Caller& caller, const pb::RenewRequest& req);
  absl::StatusOr<pb::Certificate> Revoke(const Caller& caller, const pb::RevokeRequest& req);
  absl::StatusOr<pb::RevokeAllResponse> RevokeAll(const Caller& caller,
                                                  const pb::RevokeAllRequest& req);
  absl::StatusOr<pb::LegalPersonApproval> ApproveLegalPerson(
      const Caller& caller, const pb::ApproveLegalPersonRequest& req);

  absl::StatusOr<pb::EnrollDeviceResponse> EnrollDevice(const Caller& caller,
                                                        const pb::EnrollDeviceRequest& req);
  absl::StatusOr<pb::GetChallengeResponse> GetChallenge(const Caller& caller,
                                                        const pb::GetChallengeRequest& req);
  // Opens WatchRequests and answers the requests not in `known` that arrive within `wait`
  // (once one has come, a short moment more for the rest of a burst), then closes the stream.
  absl::StatusOr<WatchResult> Watch(const Caller& caller, const pb::WatchRequestsRequest& req,
                                    const absl::flat_hash_set<std::string>& known,
                                    absl::Duration wait);
  absl::StatusOr<pb::GetApprovalChallengeResponse> GetApprovalChallenge(
      const Caller& caller, const pb::GetApprovalChallengeRequest& req);
  absl::StatusOr<pb::ApproveResponse> Approve(const Caller& caller, const pb::ApproveRequest& req);
  absl::StatusOr<pb::ChangePinResponse> ChangePin(const Caller& caller,
                                                  const pb::ChangePinRequest& req);
  absl::StatusOr<pb::ResetPinResponse> ResetPin(const Caller& caller,
                                                const pb::ResetPinRequest& req);
  absl::StatusOr<pb::AuthorizeResponse> Authorize(const Caller& caller,
                                                  const pb::AuthorizeRequest& req);
  absl::StatusOr<pb::AwaitAuthorizationResponse> AwaitAuthorization(
      const Caller& caller, const pb::AwaitAuthorizationRequest& req);
  absl::StatusOr<pb::UnblockPinResponse> UnblockPin(const Caller& caller,
                                                    const pb::UnblockPinRequest& req);

  absl::StatusOr<pb::SignHashResponse> SignHash(const Caller& caller,
                                                const pb::SignHashRequest& req);

 private:
  struct Stubs;
  std::unique_ptr<Stubs> stubs_;
  const absl::Duration timeout_;
};

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_BACKEND_H_
