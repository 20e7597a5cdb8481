// Key separation (docs/security-model.md): every HSM role is its own token (slot, partition) with
// its own PIN, so that a compromise of one service cannot use another role's keys. This table is
// the one list of roles: the config validation, the daemon and the test fixtures read it.
// A new role is one line here, then `env.Token("<role>")` in the stack that uses it.
#ifndef QSIGN_COMMON_DAEMON_TOKEN_ROLES_H_
#define QSIGN_COMMON_DAEMON_TOKEN_ROLES_H_

#include <string_view>

namespace qsign::daemon {

struct TokenRole {
  // The name of hsm.token.role in the config and of the token in logs.
  std::string_view role;
  // The config section whose presence needs this role's token; empty: no service's (a tool's).
  std::string_view section;
  // What the token holds, and nothing else.
  std::string_view holds;
};

inline constexpr TokenRole kTokenRoles[] = {
    {.role = "signer", .section = "signer", .holds = "citizens' signing keys"},
    {.role = "consent", .section = "consent", .holds = "the SAD key (and a local device CA key)"},
    {.role = "identity", .section = "identity", .holds = "the session-token keys"},
    {.role = "lifecycle",
     .section = "lifecycle",
     .holds = "the root and issuing CA, device CA and OCSP responder keys"},
    {.role = "tsa", .section = "tsa", .holds = "the timestamp authority's key"},
    // No section: no service opens it. `qsign-audit sign-heads` (docs/audit.md) signs the audit
    // chains' heads with it, so that a database administrator who rewrites a whole chain is
    // caught by the public key alone.
    {.role = "audit",
     .section = "",
     .holds = "the audit key (qsign-audit sign-heads only, never a service)"},
};

}  // namespace qsign::daemon

#endif  // QSIGN_COMMON_DAEMON_TOKEN_ROLES_H_
