#include "common/auth/authenticator.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace qsign::auth {

Authenticator::Authenticator(CredentialTable operators, CredentialTable services,
                             SessionVerifier* sessions, std::string component)
    : operators_(std::move(operators)),
      services_(std::move(services)),
      sessions_(sessions),
      component_(std::move(component)) {}

absl::StatusOr<Caller> Authenticator::Authenticate(std::string_view authorization,
                                                   bool allow_revoked) const {
  auto cred = ParseAuthorization(authorization);
  if (!cred.ok()) return cred.status();
  Caller caller;
  switch (cred->scheme) {
    case PresentedCredential::Scheme::kNone:
      return caller;
    case PresentedCredential::Scheme::kBearer: {
      if (sessions_ == nullptr) {
        return absl::UnauthenticatedError("authorization: session tokens are not accepted here");
      }
      auto claims = sessions_->Verify(cred->secret.value(), allow_revoked);
      if (!claims.ok()) return claims.status();
      caller.kind = CallerKind::kUser;
      caller.id = claims->account_id;
      caller.session = *std::move(claims);
      return caller;
    }
    case PresentedCredential::Scheme::kOperator:
    case PresentedCredential::Scheme::kService: {
      const bool is_operator = cred->scheme == PresentedCredential::Scheme::kOperator;
      const CredentialTable& table = is_operator ? operators_ : services_;
      if (!table.Check(cred->id, cred->secret.value())) {
        Log(LogLevel::kWarning, component_, "credentials refused",
            {{"kind", is_operator ? "operator" : "service"}, {"id", cred->id}});
        return absl::UnauthenticatedError(absl::StrCat(
            "authorization: ", is_operator ? "operator" : "service", " credentials not valid"));
      }
      caller.kind = is_operator ? CallerKind::kOperator : CallerKind::kService;
      caller.id = cred->id;
      return caller;
    }
  }
  return absl::InternalError("unreachable credential scheme");
}

}  // namespace qsign::auth
