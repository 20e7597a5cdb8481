// The SAD (consent/sad.h) as the signer receives it from a relying party. The first byte picks
// what the rest is: 0 a SAD string as sent (base64url of SignedSad); 1 the claims bytes, which
// the target signs with a trusted key so that the claims parser and the binding checks run.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "consent/sad.h"
#include "qsign/v1/sad.pb.h"
#include "tests/fuzz/fuzz_keys.h"

namespace {

struct Env {
  qsign::fuzz::P256Key key;
  std::unique_ptr<qsign::consent::SadVerifier> verifier;
  Env() {
    auto v = qsign::consent::SadVerifier::New({{"qsign-sad-1", key.Spki()}});
    if (!v.ok()) std::abort();
    verifier = *std::move(v);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = new Env;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string sad(rest);
  if (data[0] & 1) {
    qsign::v1::SignedSad signed_sad;
    signed_sad.set_claims(std::string(rest));
    signed_sad.set_key_id("qsign-sad-1");
    signed_sad.set_signature(env->key.Sign(rest));
    sad = absl::WebSafeBase64Escape(signed_sad.SerializeAsString());
  }
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto grant = env->verifier->Verify(sad, now);
  if (!grant.ok()) {
    if (!absl::StartsWith(grant.status().message(), "sad: ")) std::abort();
    return 0;
  }
  (void)qsign::consent::CheckSadCovers(*grant, "account", "cred-1", "2.16.840.1.101.3.4.2.1",
                                       {std::string(32, 'a')});
  return 0;
}
