#include "tools/cli/operator.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tools/cli/args.h"

namespace qsign::cli {

namespace pb = ::qsign::v1;

void OperatorCommands::Add(CLI::App* qsign, Command* selected) {
  operator_file_option_ = AddOption(qsign, "operator_file", &operator_file_,
                                    "a file holding the operator's \"<id>.<secret>\"");

  CLI::App* proof = AddCommand(qsign, "proof-identity", "proof a registered user's identity");
  AddOption(proof, "username", &username_, "the account's username");
  AddOption(proof, "document_number", &document_number_, "the identity document's number");
  AddOption(proof, "assurance", &assurance_, "high, substantial or low");
  AddOption(proof, "note", &proof_note_, "for the journal");
  proof->callback(
      [this, selected] { *selected = [this](Context& ctx) { return ProofIdentity(ctx); }; });

  CLI::App* unblock = AddCommand(qsign, "unblock-pin",
                                 "after re-proofing, let the user set a new PIN on the app (24 h)");
  AddOption(unblock, "username", &username_, "the account's username");
  AddOption(unblock, "note", &unblock_note_, "for the journal");
  unblock->callback(
      [this, selected] { *selected = [this](Context& ctx) { return UnblockPin(ctx); }; });
}

Result OperatorCommands::Authorization(std::string* authorization) const {
  std::string credential;
  if (operator_file_option_->count() > 0) {
    absl::StatusOr<std::string> text = ReadFileToString(operator_file_);
    if (!text.ok()) return Failure{kUsage, std::string(text.status().message())};
    credential = std::string(absl::StripAsciiWhitespace(*text));
  } else if (const char* env = std::getenv("QSIGN_OPERATOR"); env != nullptr) {
    credential = env;
  }
  if (credential.empty() || credential.find('.') == std::string::npos) {
    return Failure{kUsage,
                   "operator credentials needed: --operator_file=FILE holding \"<id>.<secret>\" "
                   "or QSIGN_OPERATOR=<id>.<secret>"};
  }
  *authorization = absl::StrCat("Operator ", credential);
  return std::nullopt;
}

Result OperatorCommands::AccountIdByUsername(Context& ctx, const std::string& authorization,
                                             std::string* account_id) const {
  pb::GetAccountRequest req;
  req.set_username(username_);
  pb::Account account;
  if (Result f = ctx.Unary("Identity.GetAccount", &pb::Identity::Stub::GetAccount, req, &account,
                           authorization)) {
    return f;
  }
  *account_id = account.account_id();
  return std::nullopt;
}

Result OperatorCommands::ProofIdentity(Context& ctx) const {
  std::string op;
  if (Result f = Authorization(&op)) return f;
  if (Result f = Required("username", username_)) return f;
  std::string account_id;
  if (Result f = AccountIdByUsername(ctx, op, &account_id)) return f;
  pb::ProofIdentityRequest req;
  req.set_account_id(account_id);
  req.set_assurance_level(assurance_ == "low"           ? pb::ASSURANCE_LEVEL_LOW
                          : assurance_ == "substantial" ? pb::ASSURANCE_LEVEL_SUBSTANTIAL
                                                        : pb::ASSURANCE_LEVEL_HIGH);
  req.mutable_evidence()->set_document_type(pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
  req.mutable_evidence()->set_document_number(document_number_);
  req.mutable_evidence()->set_note(proof_note_);
  pb::ProofIdentityResponse resp;
  if (Result f = ctx.Unary("proof-identity", &pb::Identity::Stub::ProofIdentity, req, &resp, op)) {
    return f;
  }
  ctx.out.Add("account_id", account_id);
  ctx.out.Add("activation_code", resp.activation_code());
  ctx.out.Add("activation_code_expires_at", FormatTime(resp.activation_code_expires_at()));
  ctx.out.Print("identity proofed; give the activation code to the user for qsign app enroll");
  return std::nullopt;
}

Result OperatorCommands::UnblockPin(Context& ctx) const {
  std::string op;
  if (Result f = Authorization(&op)) return f;
  if (Result f = Required("username", username_)) return f;
  std::string account_id;
  if (Result f = AccountIdByUsername(ctx, op, &account_id)) return f;
  pb::UnblockPinRequest req;
  req.set_account_id(account_id);
  req.set_note(unblock_note_);
  pb::UnblockPinResponse resp;
  if (Result f = ctx.Unary("unblock-pin", &pb::Consent::Stub::UnblockPin, req, &resp, op)) {
    return f;
  }
  ctx.out.Add("account_id", account_id);
  ctx.out.Add("reset_expires_at", FormatTime(resp.reset_expires_at()));
  ctx.out.Print("PIN reset opened; the user sets a new PIN in the app (qsign app reset-pin)");
  return std::nullopt;
}

}  // namespace qsign::cli
