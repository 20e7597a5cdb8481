#include "tools/cli/portal.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/grpc_status.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tools/cli/args.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

// Writes DIR/certificate.pem and DIR/chain.pem and adds the certificate's fields to the output.
Result SaveCertificate(Context& ctx, const pb::Certificate& cert) {
  absl::StatusOr<std::string> pem = cades::CertificatePem(cert.certificate_der());
  if (!pem.ok()) return Failure{kRefused, std::string(pem.status().message())};
  std::string chain;
  for (const std::string& der : cert.issuer_chain_der()) {
    absl::StatusOr<std::string> issuer = cades::CertificatePem(der);
    if (!issuer.ok()) return Failure{kRefused, std::string(issuer.status().message())};
    chain += *issuer;
  }
  if (absl::Status s = ctx.state.SaveCertificate(*pem, chain); !s.ok()) {
    return Failure{kUsage, std::string(s.message())};
  }
  ctx.out.Add("certificate_id", cert.certificate_id());
  ctx.out.Add("serial", cert.serial_hex());
  ctx.out.Add("subject", cert.subject_dn());
  ctx.out.Add("not_after", FormatTime(cert.not_after()));
  ctx.out.Add("certificate_file", ctx.state.CertificatePath());
  ctx.out.Add("chain_file", ctx.state.ChainPath());
  return std::nullopt;
}

std::string ClientRequestId() { return absl::StrCat("cli-", absl::ToUnixNanos(absl::Now())); }

}  // namespace

absl::StatusOr<pb::GetStatusResponse> CurrentStatus(Context& ctx, const std::string& bearer) {
  pb::Lifecycle::Stub stub(ctx.channel);
  pb::GetStatusResponse resp;
  auto call = ctx.Call(bearer);
  grpc::Status s = stub.GetStatus(call.get(), pb::GetStatusRequest(), &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}

void PortalCommands::Add(CLI::App* qsign, Command* selected) {
  // Each command sets *selected to itself once parsed.
  auto select = [this, selected](CLI::App* command, Result (PortalCommands::*run)(Context&) const) {
    command->callback([this, selected, run] {
      *selected = [this, run](Context& ctx) { return (this->*run)(ctx); };
    });
  };

  CLI::App* reg = AddCommand(qsign, "register", "register an account");
  AddOption(reg, "username", &username_, "the username, an e-mail address");
  AddOption(reg, "given_name", &given_name_, "the given name");
  AddOption(reg, "surname", &surname_, "the surname");
  AddOption(reg, "national_id", &national_id_, "the 13-digit national id");
  AddOption(reg, "email", &email_, "the e-mail address in the certificate");
  select(reg, &PortalCommands::Register);

  CLI::App* confirm = AddCommand(qsign, "confirm-registration",
                                 "finish a registration with the token from its e-mail link");
  AddOption(confirm, "token", &token_, "the token= part of the e-mailed link");
  select(confirm, &PortalCommands::ConfirmRegistration);

  CLI::App* login = AddCommand(qsign, "login", "log in, approved in the consent app");
  AddOption(login, "username", &username_, "the username");
  AddOption(login, "timeout", &timeout_, "seconds to wait for the approval");
  select(login, &PortalCommands::Login);

  select(AddCommand(qsign, "status", "the account's certificate and contract"),
         &PortalCommands::Status);

  CLI::App* contract = AddCommand(qsign, "contract", "the subscriber contract");
  CLI::App* accept = AddCommand(contract, "accept", "accept the current contract");
  AddOption(accept, "version", &version_, "the contract version (default: the current one)");
  select(accept, &PortalCommands::ContractAccept);

  CLI::App* cert = AddCommand(qsign, "cert", "the qualified certificate");
  CLI::App* issue = AddCommand(cert, "issue", "issue a certificate (key in the HSM)");
  AddOption(issue, "key_algorithm", &key_algorithm_, "EC_P256, EC_P384, RSA_2048, ...");
  select(issue, &PortalCommands::CertIssue);
  CLI::App* renew = AddCommand(cert, "renew", "renew the certificate");
  AddOption(renew, "certificate_id", &certificate_id_, "default: the current one");
  select(renew, &PortalCommands::CertRenew);
  CLI::App* revoke = AddCommand(cert, "revoke", "revoke the certificate");
  AddOption(revoke, "certificate_id", &certificate_id_, "default: the current one");
  AddOption(revoke, "reason", &reason_, "key-compromise, superseded or cessation");
  select(revoke, &PortalCommands::CertRevoke);
  select(AddCommand(cert, "revoke-all", "revoke everything: certificates, the app, sessions"),
         &PortalCommands::CertRevokeAll);
}

Result PortalCommands::Register(Context& ctx) const {
  for (const auto& [flag, value] :
       {std::pair{"username", &username_}, std::pair{"given_name", &given_name_},
        std::pair{"surname", &surname_}, std::pair{"national_id", &national_id_}}) {
    if (Result f = Required(flag, *value)) return f;
  }
  pb::RegisterAccountRequest req;
  req.set_username(username_);
  req.set_given_name(given_name_);
  req.set_surname(surname_);
  req.set_national_id(national_id_);
  req.set_certificate_email(email_);
  pb::RegisterAccountResponse answer;
  if (Result f = ctx.Unary("register", &pb::Identity::Stub::RegisterAccount, req, &answer))
    return f;
  ctx.out.Add("next_step", answer.next_step());
  ctx.out.Add("link_expires_at", FormatTime(answer.link_expires_at()));
  ctx.out.Print(
      "registration asked for; next: open the link e-mailed to the username (or qsign "
      "confirm-registration --token=...)");
  return std::nullopt;
}

Result PortalCommands::ConfirmRegistration(Context& ctx) const {
  if (Result f = Required("token", token_)) return f;
  pb::ConfirmRegistrationRequest req;
  req.set_token(token_);
  pb::Account account;
  if (Result f = ctx.Unary("confirm-registration", &pb::Identity::Stub::ConfirmRegistration, req,
                           &account)) {
    return f;
  }
  ctx.out.Add("account_id", account.account_id());
  ctx.out.Add("username", account.username());
  ctx.out.Print("registered; next: an operator proofs the identity (qsign proof-identity)");
  return std::nullopt;
}

Result PortalCommands::Login(Context& ctx) const {
  if (Result f = Required("username", username_)) return f;
  int timeout = 0;
  if (!ParseSeconds(timeout_, 1, &timeout)) return Usage("--timeout: seconds, a positive number");
  pb::StartLoginRequest start;
  start.set_username(username_);
  start.mutable_client()->set_user_agent("qsign-cli");
  pb::StartLoginResponse started;
  if (Result f = ctx.Unary("login", &pb::Identity::Stub::StartLogin, start, &started)) return f;
  ctx.out.Line(absl::StrCat("verification code: ", started.verification_code(),
                            "  (check that your consent app shows the same code, then approve "
                            "with your PIN)"),
               {{"verification_code", started.verification_code()}});
  const absl::Time give_up = absl::Now() + absl::Seconds(timeout);
  while (absl::Now() < give_up) {
    pb::AwaitLoginRequest req;
    req.set_login_id(started.login_id());
    req.mutable_max_wait()->set_seconds(20);
    pb::AwaitLoginResponse resp;
    if (Result f = ctx.Unary("login", &pb::Identity::Stub::AwaitLogin, req, &resp, "",
                             absl::Seconds(40))) {
      return f;
    }
    switch (resp.state()) {
      case pb::LOGIN_STATE_PENDING:
        continue;
      case pb::LOGIN_STATE_APPROVED: {
        if (absl::Status st =
                ctx.state.SaveSession({resp.session_token(), resp.account_id(), username_});
            !st.ok()) {
          return Failure{kUsage, std::string(st.message())};
        }
        ctx.out.Add("account_id", resp.account_id());
        ctx.out.Add("session_expires_at", FormatTime(resp.session_expires_at()));
        ctx.out.Add("session_file", ctx.state.SessionPath());
        ctx.out.Print("logged in");
        return std::nullopt;
      }
      case pb::LOGIN_STATE_DENIED:
        return Failure{kRefused, "login: denied in the consent app; start again if that was you"};
      case pb::LOGIN_STATE_EXPIRED:
        return Failure{kRefused, "login: expired before it was approved; run qsign login again"};
      default:
        return Failure{kRefused, "login: unexpected state from the server"};
    }
  }
  return Failure{kRefused, "login: not approved in time; is the consent app watching?"};
}

Result PortalCommands::Status(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  pb::GetStatusResponse resp;
  if (Result f = ctx.Unary("status", &pb::Lifecycle::Stub::GetStatus, pb::GetStatusRequest(), &resp,
                           bearer)) {
    return f;
  }
  ctx.out.Add("account_id", account_id);
  // "ACCOUNT_CERTIFICATE_STATE_ACTIVE" -> "active".
  ctx.out.Add("certificate", absl::AsciiStrToLower(std::string(
                                 pb::AccountCertificateState_Name(resp.state()).substr(26))));
  if (resp.has_certificate()) {
    ctx.out.Add("certificate_id", resp.certificate().certificate_id());
    ctx.out.Add("serial", resp.certificate().serial_hex());
    ctx.out.Add("subject", resp.certificate().subject_dn());
    ctx.out.Add("valid_until", FormatTime(resp.certificate().not_after()));
  }
  ctx.out.Add("current_contract", resp.current_contract_version());
  ctx.out.Add("accepted_contract", resp.accepted_contract_version().empty()
                                       ? "(none: qsign contract accept)"
                                       : resp.accepted_contract_version());
  ctx.out.Print("status");
  return std::nullopt;
}

Result PortalCommands::ContractAccept(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  pb::GetContractRequest get;
  get.set_version(version_);
  pb::Contract contract;
  if (Result f = ctx.Unary("contract", &pb::Lifecycle::Stub::GetContract, get, &contract, bearer)) {
    return f;
  }
  pb::AcceptContractRequest req;
  req.set_version(contract.version());
  req.set_text_sha256(cades::Sha256(contract.text()));
  pb::ContractAcceptance accepted;
  if (Result f = ctx.Unary("contract accept", &pb::Lifecycle::Stub::AcceptContract, req, &accepted,
                           bearer)) {
    return f;
  }
  ctx.out.Add("version", accepted.version());
  ctx.out.Add("accepted_at", FormatTime(accepted.accepted_at()));
  ctx.out.Print("contract accepted; next: qsign cert issue");
  return std::nullopt;
}

Result PortalCommands::CertIssue(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  pb::IssueRequest req;
  req.set_client_request_id(ClientRequestId());
  pb::KeyAlgorithm alg = pb::KEY_ALGORITHM_EC_P256;
  if (!pb::KeyAlgorithm_Parse(absl::StrCat("KEY_ALGORITHM_", key_algorithm_), &alg)) {
    return Usage("--key_algorithm: EC_P256, EC_P384, RSA_2048, RSA_3072 or RSA_4096");
  }
  req.set_key_algorithm(alg);
  pb::Certificate cert;
  if (Result f = ctx.Unary("cert issue", &pb::Lifecycle::Stub::Issue, req, &cert, bearer,
                           absl::Seconds(60)))
    return f;
  if (Result f = SaveCertificate(ctx, cert)) return f;
  ctx.out.Print("certificate issued (key in the HSM); next: qsign sign FILE");
  return std::nullopt;
}

Result PortalCommands::CertificateId(Context& ctx, const std::string& bearer,
                                     const std::string& what, std::string* id) const {
  *id = certificate_id_;
  if (!id->empty()) return std::nullopt;
  absl::StatusOr<pb::GetStatusResponse> status = CurrentStatus(ctx, bearer);
  if (!status.ok()) return ctx.FromStatus(what, status.status());
  *id = status->certificate().certificate_id();
  return std::nullopt;
}

Result PortalCommands::CertRenew(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  std::string id;
  if (Result f = CertificateId(ctx, bearer, "cert renew", &id)) return f;
  pb::RenewRequest req;
  req.set_client_request_id(ClientRequestId());
  req.set_certificate_id(id);
  pb::Certificate cert;
  if (Result f = ctx.Unary("cert renew", &pb::Lifecycle::Stub::Renew, req, &cert, bearer,
                           absl::Seconds(60)))
    return f;
  if (Result f = SaveCertificate(ctx, cert)) return f;
  ctx.out.Print("certificate renewed");
  return std::nullopt;
}

Result PortalCommands::CertRevoke(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  std::string id;
  if (Result f = CertificateId(ctx, bearer, "cert revoke", &id)) return f;
  if (id.empty()) return Failure{kRefused, "cert revoke: the account has no certificate"};
  pb::RevokeRequest req;
  req.set_certificate_id(id);
  req.set_reason(reason_ == "key-compromise" ? pb::REVOCATION_REASON_KEY_COMPROMISE
                 : reason_ == "superseded"   ? pb::REVOCATION_REASON_SUPERSEDED
                                             : pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  pb::Certificate cert;
  if (Result f = ctx.Unary("cert revoke", &pb::Lifecycle::Stub::Revoke, req, &cert, bearer,
                           absl::Seconds(60)))
    return f;
  ctx.out.Add("certificate_id", cert.certificate_id());
  ctx.out.Add("serial", cert.serial_hex());
  ctx.out.Add("revoked_at", FormatTime(cert.revoked_at()));
  ctx.out.Print("certificate revoked (its key is destroyed in the HSM)");
  return std::nullopt;
}

Result PortalCommands::CertRevokeAll(Context& ctx) const {
  std::string bearer, account_id;
  if (Result f = ctx.LoadBearer(&bearer, &account_id)) return f;
  pb::RevokeAllRequest req;
  req.set_account_id(account_id);
  req.set_reason(pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  pb::RevokeAllResponse resp;
  if (Result f = ctx.Unary("cert revoke-all", &pb::Lifecycle::Stub::RevokeAll, req, &resp, bearer,
                           absl::Seconds(60)))
    return f;
  ctx.out.Add("certificates_revoked", absl::StrCat(resp.revoked_certificates_size()));
  ctx.out.Add("devices_deactivated", absl::StrCat(resp.devices_deactivated()));
  ctx.out.Add("sessions_ended", absl::StrCat(resp.sessions_ended()));
  ctx.out.Add("job_id", absl::StrCat(resp.job_id()));
  ctx.out.Add("complete", resp.complete() ? "true" : "false");
  ctx.out.Print(resp.complete()
                    ? "everything revoked; the account must be proofed and enrolled again to sign"
                    : "the app and every session are ended; the certificates are revoked and "
                      "their keys destroyed in the background as soon as the signer answers");
  return std::nullopt;
}

}  // namespace qsign::cli
