// The user's commands, as a portal offers them: register, confirm-registration, login (approved in the consent app),
// status, contract accept, cert issue|renew|revoke|revoke-all. The session is kept in the state
// directory.
#ifndef QSIGN_TOOLS_CLI_PORTAL_H_
#define QSIGN_TOOLS_CLI_PORTAL_H_

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "tools/cli/context.h"

namespace qsign::cli {

class PortalCommands {
 public:
  // Adds the portal's commands to `qsign`; the one parsed is set into *selected.
  void Add(CLI::App* qsign, Command* selected);

 private:
  Result Register(Context& ctx) const;
  Result ConfirmRegistration(Context& ctx) const;
  Result Login(Context& ctx) const;
  Result Status(Context& ctx) const;
  Result ContractAccept(Context& ctx) const;
  Result CertIssue(Context& ctx) const;
  // --certificate_id, or the account's current certificate ("" when it has none).
  Result CertificateId(Context& ctx, const std::string& bearer, const std::string& what,
                       std::string* id) const;
  Result CertRenew(Context& ctx) const;
  Result CertRevoke(Context& ctx) const;
  Result CertRevokeAll(Context& ctx) const;

  std::string username_;
  std::string given_name_;
  std::string surname_;
  std::string national_id_;
  std::string email_;
  std::string token_;
  std::string timeout_ = "120";
  std::string version_;
  std::string key_algorithm_ = "EC_P256";
  std::string certificate_id_;
  std::string reason_ = "cessation";
};

// The account's certificate state (lifecycle's GetStatus) as `bearer` sees it.
absl::StatusOr<qsign::v1::GetStatusResponse> CurrentStatus(Context& ctx, const std::string& bearer);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_PORTAL_H_
