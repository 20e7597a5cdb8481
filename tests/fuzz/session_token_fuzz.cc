// Session tokens (common/auth/session_token.h) as every service receives them in
// `authorization: Bearer`. The first byte picks what the rest is: 0 a token as sent; 1 the
// payload after "qst1" and the key id, which the target signs with a trusted key so that the
// field parser, expiry and revocation checks run.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "common/auth/session_token.h"
#include "tests/fuzz/fuzz_keys.h"

namespace {

struct Env {
  qsign::fuzz::P256Key key;
  std::unique_ptr<qsign::auth::SessionTokenVerifier> verifier;
  qsign::auth::SessionRevocationList revocations;
  Env() {
    auto v = qsign::auth::SessionTokenVerifier::New({{"qsign-session-1", key.Spki()}});
    if (!v.ok()) std::abort();
    verifier = *std::move(v);
    const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
    qsign::auth::SessionRevocation logout{.sequence = 1,
                                          .session_id = std::string(32, 'a'),
                                          .account_id = "alice",
                                          .revoked_at = t,
                                          .keep_until = t + absl::Hours(1)};
    qsign::auth::SessionRevocation all{
        .sequence = 2, .account_id = "bob", .revoked_at = t, .keep_until = t + absl::Hours(1)};
    const qsign::auth::SessionRevocation entries[] = {logout, all};
    revocations.Apply(entries);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = new Env;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string token(rest);
  std::string payload;
  if (data[0] & 1) {
    const std::string key_id = "qsign-session-1";
    payload =
        "qst1" + std::string(1, static_cast<char>(key_id.size())) + key_id + std::string(rest);
    token = qsign::auth::JoinSessionToken(payload, env->key.Sign(payload));
  }
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto claims = env->verifier->Verify(token, now, &env->revocations);
  if (!claims.ok()) {
    if (!absl::StartsWith(claims.status().message(), "session token: ")) std::abort();
    return 0;
  }
  (void)qsign::auth::IsFresh(*claims, now);
  // Parsing is strict: what was accepted is written back byte for byte (when the minter's
  // stricter rules allow writing it at all).
  auto again = qsign::auth::SessionTokenPayload(*claims);
  if (!payload.empty() && again.ok() && *again != payload) std::abort();
  return 0;
}
