#include "tests/testing/registration.h"

#include <grpcpp/grpcpp.h>

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/strings.h"

namespace qsign::testing {
namespace {

constexpr char kTokenQuery[] =
    "SELECT body FROM identity.outbox WHERE recipient = $1 AND kind = 'registration_link' "
    "AND body <> '' ORDER BY id DESC LIMIT 1";

absl::StatusOr<std::string> TokenOf(absl::StatusOr<db::Result> res, std::string_view username) {
  if (!res.ok()) return res.status();
  if (res->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no registration link for ", Av(username)));
  }
  const std::string_view body = res->Get(0, 0);
  constexpr std::string_view kMarker = "?token=";
  const size_t at = body.find(kMarker);
  if (at == std::string_view::npos || at + kMarker.size() + 43 > body.size()) {
    return absl::InternalError("registration mail without a link");
  }
  return std::string(body.substr(at + kMarker.size(), 43));
}

absl::StatusOr<v1::Account> Confirm(
    v1::Identity::Stub& identity, const v1::RegisterAccountRequest& request,
    const std::function<absl::StatusOr<std::string>(std::string_view)>& token_of) {
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::RegisterAccountResponse answer;
    grpc::Status s = identity.RegisterAccount(&ctx, request, &answer);
    if (!s.ok()) return FromGrpcStatus(s);
  }
  auto token = token_of(absl::AsciiStrToLower(request.username()));
  if (!token.ok()) return token.status();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::ConfirmRegistrationRequest confirm;
  confirm.set_token(*token);
  v1::Account account;
  grpc::Status s = identity.ConfirmRegistration(&ctx, confirm, &account);
  if (!s.ok()) return FromGrpcStatus(s);
  return account;
}

}  // namespace

absl::StatusOr<std::string> RegistrationToken(db::Pool& pool, std::string_view username) {
  return TokenOf(pool.Exec(kTokenQuery, {db::Param::Text(username)}), username);
}

absl::StatusOr<std::string> RegistrationToken(std::string_view conninfo,
                                              std::string_view username) {
  auto conn = db::Connection::Open(conninfo);
  if (!conn.ok()) return conn.status();
  return TokenOf((*conn)->Exec(kTokenQuery, {db::Param::Text(username)}), username);
}

absl::StatusOr<v1::Account> RegisterAndConfirm(v1::Identity::Stub& identity, db::Pool& pool,
                                               const v1::RegisterAccountRequest& request) {
  return Confirm(identity, request,
                 [&](std::string_view username) { return RegistrationToken(pool, username); });
}

absl::StatusOr<v1::Account> RegisterAndConfirm(v1::Identity::Stub& identity,
                                               std::string_view conninfo,
                                               const v1::RegisterAccountRequest& request) {
  return Confirm(identity, request,
                 [&](std::string_view username) { return RegistrationToken(conninfo, username); });
}

}  // namespace qsign::testing
