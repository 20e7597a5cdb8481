#include "services/consent/consent.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

constexpr std::string_view kDevicePrefix = "dev-";
constexpr std::string_view kRequestPrefix = "req-";
constexpr size_t kIdHexChars = 32;

// How often a waiting thread looks at its cancellation flag when nothing else wakes it.
constexpr absl::Duration kCancelCheck = absl::Milliseconds(100);

constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
constexpr char kSha384Oid[] = "2.16.840.1.101.3.4.2.2";
constexpr char kSha512Oid[] = "2.16.840.1.101.3.4.2.3";

absl::StatusOr<std::string> NewId(std::string_view prefix) {
  unsigned char bytes[kIdHexChars / 2];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("no randomness");
  return absl::StrCat(Av(prefix), absl::BytesToHexString(absl::string_view(
                                      reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

bool WellFormedId(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + kIdHexChars || !id.starts_with(prefix)) return false;
  return std::all_of(id.begin() + static_cast<std::ptrdiff_t>(prefix.size()), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Status ValidateDeviceId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("device_id: required");
  if (!WellFormedId(id, kDevicePrefix)) {
    return absl::InvalidArgumentError("device_id: not a device id");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("request_id: required");
  if (!WellFormedId(id, kRequestPrefix)) {
    return absl::InvalidArgumentError("request_id: not a request id");
  }
  return absl::OkStatus();
}

absl::Status ValidateAccountId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (id.size() > 128) return absl::InvalidArgumentError("account_id: at most 128 characters");
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError("account_id: no spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCredentialId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("credential_id: required");
  if (id.size() > 64) return absl::InvalidArgumentError("credential_id: at most 64 characters");
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError("credential_id: only letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

// Number of UTF-8 characters, or -1 when `s` is not valid UTF-8 or holds control characters.
int Utf8Chars(std::string_view s) {
  int chars = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len == 0 || i + len > s.size()) return -1;
    if (len == 1 && (c < 0x20 || c == 0x7f)) return -1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return -1;
    }
    i += len;
    ++chars;
  }
  return chars;
}

absl::Status ValidateText(std::string_view value, std::string_view field, int min_chars,
                          int max_chars) {
  const int n = Utf8Chars(value);
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(field), ": must be UTF-8 text without control characters"));
  }
  if (n < min_chars || n > max_chars) {
    return absl::InvalidArgumentError(
        min_chars > 0 ? absl::StrCat(Av(field), ": ", min_chars, " to ", max_chars, " characters")
                      : absl::StrCat(Av(field), ": at most ", max_chars, " characters"));
  }
  return absl::OkStatus();
}

EvpPkeyPtr ParseSpki(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key && p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) key.reset();
  return key;
}

absl::Status ValidateDeviceKey(std::string_view spki) {
  absl::Status bad =
      absl::InvalidArgumentError("device_public_key: must be a P-256 SubjectPublicKeyInfo (DER)");
  if (spki.empty() || spki.size() > 512) return bad;
  EvpPkeyPtr key = ParseSpki(spki);
  if (!key || !EVP_PKEY_is_a(key.get(), "EC")) return bad;
  char group[64] = {};
  size_t group_len = 0;
  if (EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    return bad;
  }
  return absl::OkStatus();
}

// ECDSA P-256 over SHA-256(message), DER, with the device key.
bool VerifyDeviceSignature(std::string_view spki, std::string_view message,
                           std::string_view signature) {
  if (signature.empty() || signature.size() > 80) return false;
  EvpPkeyPtr key = ParseSpki(spki);
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!key || !ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

size_t HashLength(std::string_view oid) {
  if (oid == kSha256Oid) return 32;
  if (oid == kSha384Oid) return 48;
  if (oid == kSha512Oid) return 64;
  return 0;
}

std::string ActorOf(const Caller& caller) {
  switch (caller.kind) {
    case CallerKind::kUser:
      return absl::StrCat("user:", caller.id);
    case CallerKind::kOperator:
      return absl::StrCat("operator:", caller.id);
    case CallerKind::kService:
      return absl::StrCat("service:", caller.id);
    case CallerKind::kAnonymous:
      break;
  }
  return "anonymous";
}

std::string AddressOf(const ClientInfo& client) {
  if (client.client_address.empty()) return client.peer;
  return absl::StrCat(client.client_address, " via ", client.peer);
}

db::AuditEvent Audit(std::string actor, std::string action, std::string_view target,
                     const ClientInfo& client, std::string outcome = "ok",
                     std::string details = "") {
  return db::AuditEvent{.actor = std::move(actor),
                        .action = std::move(action),
                        .target = std::string(target),
                        .client_address = AddressOf(client),
                        .outcome = std::move(outcome),
                        .details = std::move(details)};
}

absl::Status RequireService(const Caller& caller) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: a service credential is required");
  }
  if (caller.kind != CallerKind::kService) {
    return absl::PermissionDeniedError("only qsign services may call this");
  }
  return absl::OkStatus();
}

absl::Status RequireOperator(const Caller& caller) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: an operator credential is required");
  }
  if (caller.kind != CallerKind::kOperator) {
    return absl::PermissionDeniedError("only operators may call this");
  }
  return absl::OkStatus();
}

std::string RequesterOf(const Caller& caller) {
  return caller.kind == CallerKind::kUser ? absl::StrCat("user:", caller.id)
                                          : absl::StrCat("service:", caller.id);
}

std::string KindLabel(RequestKind kind) { return kind == RequestKind::kSign ? "sign" : "login"; }

void CountCreated(RequestKind kind) {
  metrics::Registry::Global().AddCounter("qsign_consent_requests_created_total",
                                         "Consent requests pushed to a device, by kind.",
                                         {{"kind", KindLabel(kind)}});
}

// One per Approve call that reached a decision point: approved, denied, pin_failed (wrong PIN,
// still open), blocked (PIN blocked, now or before), expired (the answer came too late).
void CountOutcome(RequestKind kind, std::string_view outcome) {
  metrics::Registry::Global().AddCounter(
      "qsign_consent_request_outcomes_total",
      "Answers from consent apps, by request kind and outcome (approved, denied, pin_failed, "
      "blocked, expired).",
      {{"kind", KindLabel(kind)}, {"outcome", std::string(outcome)}});
}

}  // namespace

absl::StatusOr<std::unique_ptr<Consent>> Consent::New(ConsentDeps deps, CredentialTable operators,
                                                      CredentialTable services,
                                                      ConsentConfig config) {
  if (!deps.store || !deps.notifier || !deps.pins || !deps.sad_minter || !deps.certificates ||
      !deps.identity || !deps.credentials || !deps.clock) {
    return absl::InvalidArgumentError("consent: a required dependency is missing");
  }
  if (config.max_pin_failures < 1 || config.poll_interval <= absl::ZeroDuration() ||
      config.login_lifetime <= absl::ZeroDuration() ||
      config.sign_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("consent: bad configuration");
  }
  return std::unique_ptr<Consent>(
      new Consent(deps, std::move(operators), std::move(services), config));
}

absl::Time Consent::Now() const { return TruncateToMicros(deps_.clock->Now()); }

RequestState Consent::EffectiveState(const RequestRecord& r, absl::Time now) const {
  if (r.state == RequestState::kPending && now >= r.expires_at) return RequestState::kExpired;
  return r.state;
}

RequestStatus Consent::StatusOf(const RequestRecord& r, absl::Time now) const {
  RequestStatus s{.request_id = r.request_id,
                  .account_id = r.account_id,
                  .kind = r.kind,
                  .state = EffectiveState(r, now),
                  .created_at = r.created_at,
                  .expires_at = r.expires_at};
  if (s.state == RequestState::kApproved || s.state == RequestState::kDenied) {
    s.decided_at = r.decided_at;
    s.device_id = r.decided_by_device;
  }
  return s;
}

absl::StatusOr<Caller> Consent::Authenticate(std::string_view authorization) {
  auto presented = ParseAuthorization(authorization);
  if (!presented.ok()) return presented.status();
  Caller caller;
  switch (presented->scheme) {
    case PresentedCredential::Scheme::kNone:
      return caller;
    case PresentedCredential::Scheme::kBearer: {
      if (deps_.sessions == nullptr) {
        return absl::UnauthenticatedError("authorization: session tokens are not accepted here");
      }
      auto account = deps_.sessions->Verify(presented->secret.value());
      if (!account.ok()) return absl::UnauthenticatedError("authorization: session not valid");
      caller.kind = CallerKind::kUser;
      caller.id = *std::move(account);
      return caller;
    }
    case PresentedCredential::Scheme::kOperator:
      if (!operators_.Check(presented->id, presented->secret.value())) {
        return absl::UnauthenticatedError("authorization: unknown operator or wrong secret");
      }
      caller.kind = CallerKind::kOperator;
      caller.id = presented->id;
      return caller;
    case PresentedCredential::Scheme::kService:
      if (!services_.Check(presented->id, presented->secret.value())) {
        return absl::UnauthenticatedError("authorization: unknown service or wrong secret");
      }
      caller.kind = CallerKind::kService;
      caller.id = presented->id;
      return caller;
  }
  return absl::InternalError("authorization: unhandled scheme");
}

// ---- The consent app. ----

absl::StatusOr<EnrollResult> Consent::EnrollDevice(const EnrollInput& in,
                                                   const ClientInfo& client) {
  if (!enroll_limiter_.Allow(PeerAddress(client.peer), Now())) {
    return absl::ResourceExhaustedError(
        "too many enrolment attempts from this address; try again in a minute");
  }
  // Every check before the activation code is consumed.
  if (auto s = ValidateDeviceKey(in.device_public_key); !s.ok()) return s;
  if (auto s = ValidateText(in.device_name, "device_name", 1, 64); !s.ok()) return s;
  if (auto s = ValidateNewPin(in.pin.value(), "pin"); !s.ok()) return s;
  if (in.push_token.size() > 4096) {
    return absl::InvalidArgumentError("push_token: at most 4096 bytes");
  }
  if (in.activation_code.empty()) return absl::InvalidArgumentError("activation_code: required");
  if (in.activation_code.value().size() > 64) {
    return absl::NotFoundError("activation_code: not valid");
  }
  // Hash the PIN first: the code is spent by the redemption, so nothing may fail after it that
  // a retry with the same key could not repeat.
  auto verifier = deps_.pins->Hash(in.pin.value());
  if (!verifier.ok()) return verifier.status();

  auto account = deps_.identity->RedeemActivationCode(in.activation_code.value(),
                                                      Sha256(in.device_public_key));
  if (!account.ok()) {
    if (account.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError("activation_code: not valid (unknown, used or expired)");
    }
    return account.status();
  }
  auto device_id = NewId(kDevicePrefix);
  if (!device_id.ok()) return device_id.status();
  const absl::Time now = Now();
  auto chain = deps_.certificates->Issue({.device_id = *device_id,
                                          .account_id = *account,
                                          .device_name = in.device_name,
                                          .public_key_spki = in.device_public_key,
                                          .now = now});
  if (!chain.ok()) return chain.status();
  if (chain->empty()) return absl::InternalError("device certificate issuer answered nothing");

  DeviceRecord device{.device_id = *device_id,
                      .account_id = *account,
                      .name = in.device_name,
                      .public_key_spki = in.device_public_key,
                      .push_token = in.push_token,
                      .certificate_der = (*chain)[0],
                      .active = true,
                      .enrolled_at = now};
  auto replaced = deps_.store->EnrollDevice(
      device, *verifier,
      Audit(absl::StrCat("device:", *device_id), "device.enroll", *account, client, "ok",
            absl::StrCat("name \"", in.device_name, "\"")));
  if (!replaced.ok()) return replaced.status();
  deps_.notifier->Notify(*account);  // Ends the replaced device's stream.
  Log(LogLevel::kInfo, "consent", "device enrolled",
      {{"device_id", *device_id},
       {"account_id", *account},
       {"replaced", absl::StrCat(replaced->device_ids.size())}});
  return EnrollResult{.device_id = *std::move(device_id),
                      .account_id = *std::move(account),
                      .certificate_chain_der = *std::move(chain)};
}

absl::StatusOr<ChallengeResult> Consent::GetChallenge(std::string_view device_id) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), 32) != 1) {
    return absl::InternalError("no randomness");
  }
  const absl::Time now = Now();
  const absl::Time expires_at = now + config_.challenge_lifetime;
  std::string challenge = EncodeChallenge(device_id, expires_at, nonce);
  // Unknown and inactive devices get one too: WatchRequests refuses them.
  if (auto s = deps_.store->AddChallenge(Sha256(challenge), device_id, expires_at, now); !s.ok()) {
    return s;
  }
  return ChallengeResult{.challenge = std::move(challenge), .expires_at = expires_at};
}

absl::Status Consent::WaitOnAccount(std::string_view account_id, absl::Time deadline,
                                    absl::FunctionRef<bool()> cancelled,
                                    absl::FunctionRef<absl::StatusOr<bool>()> look) {
  auto sub = deps_.notifier->Subscribe(account_id);
  bool dirty = true;
  absl::Time next_look = absl::Now();
  while (true) {
    if (cancelled()) return absl::CancelledError("the caller went away");
    if (deps_.notifier->closed()) return absl::UnavailableError("the server is shutting down");
    const absl::Time real_now = absl::Now();
    if (dirty || real_now >= next_look) {
      auto done = look();
      if (!done.ok()) return done.status();
      if (*done) return absl::OkStatus();
      next_look = real_now + config_.poll_interval;
    }
    if (absl::Now() >= deadline) return absl::OkStatus();
    dirty = sub->Wait(std::min({deadline, next_look, absl::Now() + kCancelCheck}));
  }
}

absl::Status Consent::WatchRequests(std::string_view device_id, std::string_view challenge,
                                    std::string_view signature, absl::FunctionRef<void()> opened,
                                    absl::FunctionRef<bool(const PendingRequest&)> send,
                                    absl::FunctionRef<bool()> cancelled) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (challenge.empty() || challenge.size() > 1024) {
    return absl::InvalidArgumentError("challenge: required, as received from GetChallenge");
  }
  if (signature.empty()) return absl::InvalidArgumentError("signature: required");
  auto expires_at = deps_.store->TakeChallenge(Sha256(challenge), device_id);
  if (!expires_at.ok()) {
    if (expires_at.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("challenge: not issued to this device, or used before");
    }
    return expires_at.status();
  }
  if (Now() >= *expires_at) return absl::UnauthenticatedError("challenge: expired");
  auto device = deps_.store->GetDevice(device_id);
  if (!device.ok()) {
    if (device.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("device_id: not an active device");
    }
    return device.status();
  }
  if (!VerifyDeviceSignature(device->public_key_spki, challenge, signature)) {
    return absl::UnauthenticatedError("signature: does not verify with the device key");
  }
  if (!device->active) return absl::UnauthenticatedError("device_id: not an active device");
  opened();

  absl::flat_hash_set<std::string> sent;
  bool deactivated = false;
  absl::Status send_status;
  absl::Status st = WaitOnAccount(
      device->account_id, absl::InfiniteFuture(), cancelled, [&]() -> absl::StatusOr<bool> {
        auto snap = deps_.store->Watch(device_id, Now());
        if (!snap.ok()) return snap.status();
        if (!snap->device_active) {
          deactivated = true;
          return true;
        }
        absl::flat_hash_set<std::string> still_pending;
        for (RequestRecord& r : snap->pending) {
          still_pending.insert(r.request_id);
          if (sent.contains(r.request_id)) continue;
          auto decoded = DecodeStatement(r.statement);
          if (!decoded.ok()) {
            return absl::InternalError(absl::StrCat("stored statement of ", r.request_id, ": ",
                                                    decoded.status().message()));
          }
          if (!send(PendingRequest{.statement_bytes = std::move(r.statement),
                                   .statement = *std::move(decoded)})) {
            send_status = absl::CancelledError("the device went away");
            return true;
          }
          sent.insert(r.request_id);
        }
        sent = std::move(still_pending);
        return false;
      });
  if (!st.ok()) return st;
  if (!send_status.ok()) return send_status;
  if (deactivated) {
    return absl::PermissionDeniedError(
        "device_id: the device was deactivated (replaced or revoked)");
  }
  return absl::OkStatus();
}

absl::StatusOr<ApproveOutcome> Consent::Approve(const ApproveInput& in, const ClientInfo& client) {
  if (auto s = ValidateRequestId(in.request_id); !s.ok()) return s;
  if (auto s = ValidateDeviceId(in.device_id); !s.ok()) return s;
  if (!in.decision.has_value()) {
    return absl::InvalidArgumentError("decision: APPROVE or DENY");
  }
  if (in.device_signature.empty()) {
    return absl::InvalidArgumentError("device_signature: required");
  }
  const bool approve = *in.decision == Decision::kApprove;
  if (approve && in.pin.empty()) return absl::InvalidArgumentError("pin: required to approve");

  // 1. The request belongs to the device's account (one query brings request, device and PIN).
  const absl::Status not_found = absl::NotFoundError("request_id: no such request");
  auto context = deps_.store->GetApprovalContext(in.request_id, in.device_id);
  if (!context.ok()) {
    return context.status().code() == absl::StatusCode::kNotFound ? not_found : context.status();
  }
  const RequestRecord* request = &context->request;
  if (context->device_account_id != request->account_id) return not_found;

  // 2. Signed by the account's active device, over the statement as we stored it.
  const std::string actor = absl::StrCat("device:", in.device_id);
  if (!context->device_active) {
    return absl::PermissionDeniedError("device_signature: not the account's active device");
  }
  if (!VerifyDeviceSignature(context->device_public_key_spki,
                             DecisionMessage(request->statement, *in.decision),
                             in.device_signature)) {
    return absl::PermissionDeniedError(
        "device_signature: does not verify over the request's statement and decision");
  }

  // 3. Still open.
  const absl::Time now = Now();
  switch (EffectiveState(*request, now)) {
    case RequestState::kPending:
      break;
    case RequestState::kExpired:
      CountOutcome(request->kind, "expired");
      return absl::FailedPreconditionError("request_id: expired");
    case RequestState::kCancelled:
      return absl::FailedPreconditionError("request_id: cancelled (the device was replaced)");
    case RequestState::kApproved:
    case RequestState::kDenied:
      return absl::FailedPreconditionError("request_id: already decided");
  }
  const std::string action = request->kind == RequestKind::kSign ? "sign" : "login";

  if (!approve) {
    if (auto s = deps_.store->DecideRequest(
            in.request_id, request->account_id,
            {.state = RequestState::kDenied, .device_id = in.device_id, .decided_at = now},
            Audit(actor, absl::StrCat(action, ".deny"), in.request_id, client));
        !s.ok()) {
      return s;
    }
    deps_.notifier->Notify(request->account_id);
    CountOutcome(request->kind, "denied");
    return ApproveOutcome{.result = ApproveResult::kDenied, .state = RequestState::kDenied};
  }

  // 4. The PIN.
  const std::optional<PinRecord>& pin = context->pin;
  if (!pin.has_value()) {
    return absl::InternalError(absl::StrCat("account ", request->account_id, " has no PIN"));
  }
  if (pin->blocked) {
    absl::Status s = deps_.store->DecideRequest(
        in.request_id, request->account_id,
        {.state = RequestState::kDenied, .device_id = in.device_id, .decided_at = now},
        Audit(actor, absl::StrCat(action, ".approve"), in.request_id, client, "pin_blocked"));
    if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) return s;
    deps_.notifier->Notify(request->account_id);
    CountOutcome(request->kind, "blocked");
    return ApproveOutcome{.result = ApproveResult::kPinBlocked, .state = RequestState::kDenied};
  }
  auto correct = deps_.pins->Verify(in.pin.value(), pin->verifier);
  if (!correct.ok()) return correct.status();
  if (!*correct) {
    auto failure = deps_.store->RecordPinFailure(
        request->account_id, in.request_id, config_.max_pin_failures, now,
        Audit(actor, absl::StrCat(action, ".approve"), in.request_id, client, "pin_wrong"));
    if (!failure.ok()) return failure.status();
    deps_.notifier->Notify(request->account_id);
    if (failure->blocked) {
      Log(LogLevel::kWarning, "consent", "PIN blocked after wrong attempts",
          {{"account_id", request->account_id}});
      CountOutcome(request->kind, "blocked");
      auto after = deps_.store->GetRequest(in.request_id);
      if (!after.ok()) return after.status();
      return ApproveOutcome{.result = ApproveResult::kPinBlocked,
                            .state = EffectiveState(*after, now)};
    }
    CountOutcome(request->kind, "pin_failed");
    return ApproveOutcome{.result = ApproveResult::kPinWrong,
                          .remaining_pin_attempts = config_.max_pin_failures - failure->failures,
                          .state = RequestState::kPending};
  }

  // 5. Approved: for a sign request, the SAD bound to exactly the stored hashes.
  RequestDecision decision{.state = RequestState::kApproved,
                           .device_id = in.device_id,
                           .decided_at = now,
                           .reset_pin_verifier = pin->verifier};
  std::string details;
  if (request->kind == RequestKind::kSign) {
    auto statement = DecodeStatement(request->statement);
    if (!statement.ok()) {
      return absl::InternalError(
          absl::StrCat("stored statement of ", in.request_id, ": ", statement.status().message()));
    }
    const SignDetails& sign = statement->sign;
    auto sad =
        deps_.sad_minter->Mint(SadGrant{.account_id = request->account_id,
                                        .credential_id = sign.credential_id,
                                        .hash_algorithm_oid = sign.hash_algorithm_oid,
                                        .hashes = sign.hashes,
                                        .num_signatures = static_cast<uint32_t>(sign.hashes.size()),
                                        .consent_request_id = in.request_id},
                               now, config_.sad_lifetime);
    if (!sad.ok()) return sad.status();
    decision.sad = *std::move(sad);
    decision.sad_expires_at = now + config_.sad_lifetime;
    details = absl::StrCat("credential ", sign.credential_id, ", ", sign.hashes.size(), " hashes");
  }
  absl::Status s = deps_.store->DecideRequest(
      in.request_id, request->account_id, decision,
      Audit(actor, absl::StrCat(action, ".approve"), in.request_id, client, "ok", details));
  if (!s.ok()) return s;
  deps_.notifier->Notify(request->account_id);
  CountOutcome(request->kind, "approved");
  return ApproveOutcome{.result = ApproveResult::kApproved, .state = RequestState::kApproved};
}

// ---- Requests. ----

absl::StatusOr<RequestRecord> Consent::CreateRequest(Statement statement,
                                                     std::string_view account_id,
                                                     std::string requester) {
  auto request_id = NewId(kRequestPrefix);
  if (!request_id.ok()) return request_id.status();
  statement.request_id = *request_id;
  statement.account_id = std::string(account_id);
  RequestRecord record{.request_id = *request_id,
                       .account_id = std::string(account_id),
                       .kind = statement.kind,
                       .state = RequestState::kPending,
                       .statement = EncodeStatement(statement),
                       .created_at = statement.created_at,
                       .expires_at = statement.expires_at,
                       .requester = std::move(requester)};
  auto pushed = deps_.store->CreateRequest(record);
  if (!pushed.ok()) return pushed.status();
  CountCreated(record.kind);
  deps_.notifier->Notify(account_id);
  if (*pushed && deps_.push != nullptr) deps_.push->Kick();
  return record;
}

absl::StatusOr<RequestStatus> Consent::CreateLoginRequest(const Caller& caller,
                                                          const LoginRequestInput& in,
                                                          const ClientInfo& client) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(in.account_id); !s.ok()) return s;
  if (auto s = ValidateText(in.login.verification_code, "login.verification_code", 1, 16);
      !s.ok()) {
    return s;
  }
  if (auto s = ValidateText(in.login.client_description, "login.client_description", 0, 256);
      !s.ok()) {
    return s;
  }
  if (in.lifetime < absl::ZeroDuration() || in.lifetime > config_.max_lifetime) {
    return absl::InvalidArgumentError(absl::StrCat("lifetime: between 0 (the default) and ",
                                                   absl::FormatDuration(config_.max_lifetime)));
  }
  const absl::Time now = Now();
  Statement st{
      .kind = RequestKind::kLogin,
      .created_at = now,
      .expires_at = TruncateToMicros(
          now + (in.lifetime == absl::ZeroDuration() ? config_.login_lifetime : in.lifetime)),
      .display_text = LoginDisplayText(in.login),
      .login = in.login};
  auto record = CreateRequest(std::move(st), in.account_id, RequesterOf(caller));
  if (!record.ok()) return record.status();
  return StatusOf(*record, now);
}

absl::StatusOr<RequestStatus> Consent::GetRequest(const Caller& caller,
                                                  std::string_view request_id) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateRequestId(request_id); !s.ok()) return s;
  auto record = deps_.store->GetRequest(request_id);
  if (!record.ok()) return record.status();
  return StatusOf(*record, Now());
}

absl::StatusOr<RequestRecord> Consent::AwaitDecision(
    std::string_view request_id, absl::Duration max_wait, absl::FunctionRef<bool()> cancelled,
    absl::FunctionRef<absl::Status(const RequestRecord&)> may_see) {
  auto record = deps_.store->GetRequest(request_id);
  if (!record.ok()) return record.status();
  if (auto s = may_see(*record); !s.ok()) return s;
  if (EffectiveState(*record, Now()) != RequestState::kPending ||
      max_wait <= absl::ZeroDuration()) {
    return record;
  }
  const absl::Time deadline = absl::Now() + std::min(max_wait, config_.max_await);
  absl::Status st =
      WaitOnAccount(record->account_id, deadline, cancelled, [&]() -> absl::StatusOr<bool> {
        auto again = deps_.store->GetRequest(request_id);
        if (!again.ok()) return again.status();
        *record = *std::move(again);
        return EffectiveState(*record, Now()) != RequestState::kPending;
      });
  if (!st.ok()) return st;
  return record;
}

absl::StatusOr<RequestStatus> Consent::AwaitRequest(const Caller& caller,
                                                    std::string_view request_id,
                                                    absl::Duration max_wait,
                                                    absl::FunctionRef<bool()> cancelled) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateRequestId(request_id); !s.ok()) return s;
  if (max_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_wait: must not be negative");
  }
  auto record = AwaitDecision(request_id, max_wait, cancelled,
                              [](const RequestRecord&) { return absl::OkStatus(); });
  if (!record.ok()) return record.status();
  return StatusOf(*record, Now());
}

absl::StatusOr<AuthorizeResult> Consent::Authorize(const Caller& caller, const AuthorizeInput& in,
                                                   const ClientInfo& client) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: a session or service credential is required");
  }
  if (caller.kind == CallerKind::kOperator) {
    return absl::PermissionDeniedError("operators cannot authorize signatures");
  }
  if (auto s = ValidateCredentialId(in.credential_id); !s.ok()) return s;
  const size_t hash_len = HashLength(in.hash_algorithm_oid);
  if (hash_len == 0) {
    return absl::InvalidArgumentError(
        "hash_algorithm_oid: SHA-256, SHA-384 or SHA-512 (2.16.840.1.101.3.4.2.1/2/3)");
  }
  if (in.hashes.empty()) return absl::InvalidArgumentError("hashes: at least one hash required");
  if (in.hashes.size() > kMaxSadHashes) {
    return absl::InvalidArgumentError(absl::StrCat("hashes: at most ", kMaxSadHashes));
  }
  std::set<std::string_view> seen;
  for (size_t i = 0; i < in.hashes.size(); ++i) {
    if (in.hashes[i].size() != hash_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hashes[", i, "]: ", in.hashes[i].size(), " bytes, the hash algorithm needs ", hash_len));
    }
    if (!seen.insert(in.hashes[i]).second) {
      return absl::InvalidArgumentError(absl::StrCat("hashes[", i, "]: duplicate"));
    }
  }
  if (in.num_signatures != 0 && in.num_signatures != in.hashes.size()) {
    return absl::InvalidArgumentError(
        "num_signatures: must equal the number of hashes (or 0 for that number)");
  }
  if (!in.documents.empty() && in.documents.size() != in.hashes.size()) {
    return absl::InvalidArgumentError("documents: none, or one per hash");
  }
  for (size_t i = 0; i < in.documents.size(); ++i) {
    const DocumentInfo& d = in.documents[i];
    const std::string field = absl::StrCat("documents[", i, "]");
    if (auto s = ValidateText(d.label, absl::StrCat(field, ".label"), 1, 200); !s.ok()) return s;
    if (auto s = ValidateText(d.document_name, absl::StrCat(field, ".document_name"), 0, 255);
        !s.ok()) {
      return s;
    }
    if (!d.document_digest.empty() && d.document_digest.size() != hash_len) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".document_digest: empty or of the hash algorithm's length"));
    }
  }
  if (auto s = ValidateText(in.relying_party_name, "relying_party_name", 0, 200); !s.ok()) {
    return s;
  }

  // The credential: a user's own only (another's does not exist for them), and usable.
  const absl::Status no_credential = absl::NotFoundError("credential_id: no such credential");
  auto credential = deps_.credentials->Lookup(in.credential_id);
  if (!credential.ok()) {
    return credential.status().code() == absl::StatusCode::kNotFound ? no_credential
                                                                     : credential.status();
  }
  if (caller.kind == CallerKind::kUser && credential->account_id != caller.id) {
    return no_credential;
  }
  if (!credential->active) {
    return absl::FailedPreconditionError("credential_id: the credential is not active");
  }
  if (static_cast<int>(in.hashes.size()) > credential->max_hashes_per_authorization) {
    return absl::InvalidArgumentError(absl::StrCat("hashes: the credential allows at most ",
                                                   credential->max_hashes_per_authorization,
                                                   " per authorization"));
  }
  const absl::Time now = Now();
  Statement st{.kind = RequestKind::kSign,
               .created_at = now,
               .expires_at = TruncateToMicros(now + config_.sign_lifetime),
               .sign = {.credential_id = in.credential_id,
                        .relying_party_name = in.relying_party_name,
                        .hash_algorithm_oid = in.hash_algorithm_oid,
                        .hashes = in.hashes,
                        .documents = in.documents}};
  st.display_text = SignDisplayText(st.sign);
  auto record = CreateRequest(std::move(st), credential->account_id, RequesterOf(caller));
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::FailedPreconditionError(
          "credential_id: the credential's owner has no active consent app");
    }
    return record.status();
  }
  return AuthorizeResult{.request_id = record->request_id, .expires_at = record->expires_at};
}

absl::StatusOr<AuthorizationOutcome> Consent::AwaitAuthorization(
    const Caller& caller, std::string_view request_id, absl::Duration max_wait,
    absl::FunctionRef<bool()> cancelled) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: a session or service credential is required");
  }
  if (caller.kind == CallerKind::kOperator) {
    return absl::PermissionDeniedError("operators cannot authorize signatures");
  }
  if (auto s = ValidateRequestId(request_id); !s.ok()) return s;
  if (max_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_wait: must not be negative");
  }
  const std::string requester = RequesterOf(caller);
  auto record =
      AwaitDecision(request_id, max_wait, cancelled, [&](const RequestRecord& r) -> absl::Status {
        if (r.requester != requester) {
          return absl::NotFoundError("request_id: no such request");
        }
        if (r.kind != RequestKind::kSign) {
          return absl::FailedPreconditionError("request_id: not a SIGN request");
        }
        return absl::OkStatus();
      });
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError("request_id: no such request");
    }
    return record.status();
  }
  const absl::Time now = Now();
  AuthorizationOutcome out{.state = EffectiveState(*record, now)};
  if (out.state == RequestState::kApproved && record->sad_expires_at &&
      now < *record->sad_expires_at) {
    out.sad = record->sad;
    out.sad_expires_at = record->sad_expires_at;
  }
  return out;
}

// ---- Operators and services. ----

absl::Status Consent::UnblockPin(const Caller& caller, std::string_view account_id,
                                 const SecretString& new_pin, std::string_view note,
                                 const ClientInfo& client) {
  if (auto s = RequireOperator(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  if (auto s = ValidateNewPin(new_pin.value(), "new_pin"); !s.ok()) return s;
  if (auto s = ValidateText(note, "note", 0, 500); !s.ok()) return s;
  const absl::Time now = Now();
  auto proofed = deps_.identity->LastProofedAt(account_id);
  if (!proofed.ok()) return proofed.status();
  if (!proofed->has_value() || **proofed < now - config_.reproof_window) {
    return absl::FailedPreconditionError(
        "account_id: re-proof first (Identity.ProofIdentity within the last hour)");
  }
  auto device = deps_.store->GetActiveDevice(account_id);
  if (!device.ok()) return device.status();
  if (!device->has_value()) {
    return absl::FailedPreconditionError("account_id: the account has no active consent app");
  }
  auto verifier = deps_.pins->Hash(new_pin.value());
  if (!verifier.ok()) return verifier.status();
  absl::Status s = deps_.store->SetPin(
      account_id, *verifier, now,
      Audit(ActorOf(caller), "pin.unblock", account_id, client, "ok", std::string(note)));
  if (s.code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("account_id: the account has no PIN");
  }
  return s;
}

absl::StatusOr<Deactivation> Consent::DeactivateDevices(const Caller& caller,
                                                        std::string_view account_id,
                                                        std::string_view reason,
                                                        const ClientInfo& client) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(account_id); !s.ok()) return s;
  if (auto s = ValidateText(reason, "reason", 0, 500); !s.ok()) return s;
  auto out = deps_.store->DeactivateDevices(account_id, Now(),
                                            Audit(ActorOf(caller), "device.deactivate_all",
                                                  account_id, client, "ok", std::string(reason)));
  if (!out.ok()) return out.status();
  deps_.notifier->Notify(account_id);
  return out;
}

void Consent::Shutdown() { deps_.notifier->Close(); }

}  // namespace qsign::consent
