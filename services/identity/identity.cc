#include "services/identity/identity.h"

#include <openssl/rand.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "common/auth/audit_event.h"
#include "common/log.h"
#include "common/request_id.h"
#include "common/strings.h"
#include "consent/statement.h"
#include "services/identity/validation.h"

namespace qsign::identity {
namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr size_t kActivationCodeSymbols = 16;
constexpr size_t kLoginIdChars = 43;  // 32 bytes, base64url without padding.
constexpr int kRevocationPageSize = 1000;
// A StartLogin that pushed nothing never waits longer than this to mimic one that did.
constexpr absl::Duration kMaxLatencyPadding = absl::Milliseconds(500);
constexpr char kHandedOut[] =
    "login_id: this login completed before; its session token is handed out only once";

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

absl::StatusOr<std::string> NewAccountId() {
  auto b = RandomBytes(16);
  if (!b.ok()) return b.status();
  // UUID version 4, variant 1.
  (*b)[6] = static_cast<char>((static_cast<uint8_t>((*b)[6]) & 0x0F) | 0x40);
  (*b)[8] = static_cast<char>((static_cast<uint8_t>((*b)[8]) & 0x3F) | 0x80);
  const std::string hex = absl::BytesToHexString(*b);
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20));
}

absl::StatusOr<std::string> NewSessionId() {
  auto b = RandomBytes(16);
  if (!b.ok()) return b.status();
  return absl::BytesToHexString(*b);
}

absl::StatusOr<std::string> NewLoginId() {
  auto b = RandomBytes(32);
  if (!b.ok()) return b.status();
  return absl::WebSafeBase64Escape(*b);
}

// Four digits, uniform: two random bytes below 60000 (a multiple of 10000), else draw again.
absl::StatusOr<std::string> NewVerificationCode() {
  for (;;) {
    auto b = RandomBytes(2);
    if (!b.ok()) return b.status();
    unsigned v = (static_cast<uint8_t>((*b)[0]) << 8) | static_cast<uint8_t>((*b)[1]);
    if (v < 60000) return absl::StrFormat("%04u", v % 10000);
  }
}

// 80 random bits as 16 Crockford base32 symbols.
absl::StatusOr<SecretString> NewActivationCodeSymbols() {
  auto b = RandomBytes(10);
  if (!b.ok()) return b.status();
  std::string symbols;
  symbols.reserve(kActivationCodeSymbols);
  for (size_t group = 0; group < 2; ++group) {
    uint64_t v = 0;
    for (size_t i = 0; i < 5; ++i) v = (v << 8) | static_cast<uint8_t>((*b)[group * 5 + i]);
    for (int shift = 35; shift >= 0; shift -= 5) symbols.push_back(kCrockford[(v >> shift) & 31]);
  }
  SecretString wiped(*std::move(b));  // Wipes the random bytes on return.
  return SecretString(std::move(symbols));
}

absl::Time TruncateToMicros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }

// "<who> only" when the caller is of another kind; UNAUTHENTICATED without credentials.
absl::Status Require(const Caller& caller, std::initializer_list<CallerKind> allowed,
                     std::string_view who) {
  if (caller.kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError(
        absl::StrCat("authorization: ", Av(who), " credentials required"));
  }
  for (CallerKind k : allowed) {
    if (caller.kind == k) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("this call is for ", Av(who), " only"));
}

// An operator's act on one account: the caller an operator, account_id well-formed.
absl::Status RequireOperatorOn(const Caller& caller, std::string_view account_id) {
  if (auto s = Require(caller, {CallerKind::kOperator}, "operator"); !s.ok()) return s;
  if (account_id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (account_id.size() > 64) return absl::InvalidArgumentError("account_id: too long");
  return absl::OkStatus();
}

// What the phone shows about where the login was started.
std::string DescribeClient(const ClientInfo& client) {
  std::string where = client.client_address.empty() ? client.peer : client.client_address;
  std::string agent = client.user_agent.substr(0, 100);
  if (!IsValidUtf8(agent)) agent.clear();
  if (agent.empty()) return where;
  return absl::StrCat(where, ", ", agent);
}

}  // namespace

std::string FormatActivationCode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.push_back('-');
    out.push_back(s[i]);
  }
  return out;
}

std::string NormalizeActivationCode(std::string_view typed) {
  std::string out;
  for (char c : typed) {
    if (c == '-' || c == ' ') continue;
    c = absl::ascii_toupper(static_cast<unsigned char>(c));
    if (c == 'O') c = '0';
    if (c == 'I' || c == 'L') c = '1';
    if (kCrockford.find(c) == std::string_view::npos) return "";
    out.push_back(c);
  }
  if (out.size() != kActivationCodeSymbols) return "";
  return out;
}

Identity::Identity(IdentityStore* store, ConsentClient* consent, const Clock* clock,
                   CredentialTable operators, CredentialTable services, IdentityConfig config,
                   std::unique_ptr<SessionTokenMinter> minter,
                   std::unique_ptr<SessionTokenVerifier> verifier, std::vector<SessionKeyInfo> keys)
    : store_(store),
      consent_(consent),
      clock_(clock),
      authenticator_(std::move(operators), std::move(services), this, "identity"),
      config_(std::move(config)),
      minter_(std::move(minter)),
      verifier_(std::move(verifier)),
      keys_(std::move(keys)),
      login_account_limiter_(config_.logins_per_account_per_minute, absl::Minutes(1)),
      login_address_limiter_(config_.logins_per_address_per_minute, absl::Minutes(1)),
      register_address_limiter_(config_.registrations_per_address_per_hour, absl::Hours(1)),
      correction_limiter_(config_.corrections_per_operator_per_hour, absl::Hours(1)) {}

absl::StatusOr<std::unique_ptr<Identity>> Identity::New(hsm::Hsm* hsm, IdentityStore* store,
                                                        ConsentClient* consent, const Clock* clock,
                                                        CredentialTable operators,
                                                        CredentialTable services,
                                                        IdentityConfig config) {
  if (config.session_key_ids.empty()) {
    return absl::InvalidArgumentError("identity: at least one session key id required");
  }
  if (config.session_lifetime <= absl::ZeroDuration() ||
      config.login_lifetime <= absl::ZeroDuration() ||
      config.activation_code_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("identity: lifetimes must be positive");
  }
  auto minter = SessionTokenMinter::New(hsm, config.session_key_ids.front());
  if (!minter.ok()) return minter.status();
  std::map<std::string, std::string> trusted;
  std::vector<SessionKeyInfo> keys;
  for (const auto& id : config.session_key_ids) {
    auto pub = hsm->GetPublicKey(id);
    if (!pub.ok()) return pub.status();
    if (pub->type != hsm::KeyType::kEcP256) {
      return absl::FailedPreconditionError(absl::StrCat("session key ", id, " must be EC_P256"));
    }
    trusted[id] = pub->spki_der;
    keys.push_back({.key_id = id, .public_key_spki = pub->spki_der});
  }
  auto verifier = SessionTokenVerifier::New(trusted);
  if (!verifier.ok()) return verifier.status();
  return std::unique_ptr<Identity>(
      new Identity(store, consent, clock, std::move(operators), std::move(services),
                   std::move(config), *std::move(minter), *std::move(verifier), std::move(keys)));
}

absl::StatusOr<SessionClaims> Identity::Verify(std::string_view token, bool allow_revoked) {
  auto claims = verifier_->Verify(token, clock_->Now());
  if (!claims.ok()) return claims.status();
  if (allow_revoked) return claims;
  auto revoked = store_->IsSessionRevoked(*claims);
  if (!revoked.ok()) return revoked.status();
  if (*revoked) {
    return absl::UnauthenticatedError("session token: revoked (logged out); log in again");
  }
  return claims;
}

absl::StatusOr<Caller> Identity::Authenticate(std::string_view authorization, bool allow_revoked) {
  return authenticator_.Authenticate(authorization, allow_revoked);
}

absl::StatusOr<RegistrationAnswer> Identity::RegisterAccount(const RegisterAccountInput& in,
                                                             const ClientInfo& client) {
  const absl::Time now = TruncateToMicros(clock_->Now());
  if (auto s = ValidateEmail("username", in.username); !s.ok()) return s;
  if (auto s = ValidatePersonData(in.given_name, in.surname, in.national_id,
                                  absl::ToCivilDay(now, absl::UTCTimeZone()));
      !s.ok()) {
    return s;
  }
  if (!in.certificate_email.empty()) {
    if (auto s = ValidateEmail("certificate_email", in.certificate_email); !s.ok()) return s;
  }
  // Counted once the request is well-formed: what it costs is a row and an e-mail.
  if (auto s = register_address_limiter_.Acquire(auth::KeyAddress(client), clock_->Now(),
                                                 "too many registrations from this address");
      !s.ok()) {
    return s;
  }
  const std::string username = NormalizeUsername(in.username);
  const RegistrationAnswer answer{.link_expires_at = now + config_.registration_link_lifetime};
  auto existing = store_->GetAccountByUsername(username);
  if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound) {
    return existing.status();
  }
  // The same answer and the same work (one transaction: a mail queued, an audit record) whether
  // or not the address is registered; only its mailbox learns which.
  OutboxMessage mail{.recipient = username, .created_at = now};
  std::optional<PendingRegistration> registration;
  std::string outcome = "ok";
  if (existing.ok()) {
    mail.kind = "registration_exists";
    mail.subject = "qsign: you already have an account";
    mail.body =
        "Someone (perhaps you) asked to register a qsign account with this address, which "
        "already has one. Log in with it instead; if it was not you, ignore this message.\n";
    outcome = "username_taken";
  } else {
    auto token = NewLoginId();  // 256 bits, base64url: the same shape as a login id.
    if (!token.ok()) return token.status();
    SecretString secret(*std::move(token));
    registration = PendingRegistration{.token_sha256 = Sha256(secret.value()),
                                       .username = username,
                                       .given_name = in.given_name,
                                       .surname = in.surname,
                                       .national_id = in.national_id,
                                       .certificate_email = in.certificate_email,
                                       .created_at = now,
                                       .expires_at = answer.link_expires_at};
    mail.kind = "registration_link";
    mail.subject = "qsign: confirm your registration";
    mail.body = absl::StrCat(
        "To finish registering your qsign account, open this link before ",
        absl::FormatTime("%Y-%m-%d %H:%M UTC", answer.link_expires_at, absl::UTCTimeZone()),
        ":\n\n  ", config_.registration_url, "?token=", Av(secret.value()),
        "\n\n(or: qsign confirm-registration --token=", Av(secret.value()),
        ")\n\nThen a registration officer verifies your identity document. If you did not ask "
        "for this, ignore this message: nothing is registered without the link.\n");
  }
  if (auto s = store_->QueueRegistration(
          registration ? &*registration : nullptr, mail,
          auth::AuditEventOf(Caller{}, "identity.registration.request", "", client, outcome,
                             absl::StrCat("username=", username)));
      !s.ok()) {
    return s;
  }
  return answer;
}

absl::StatusOr<Account> Identity::ConfirmRegistration(std::string_view token,
                                                      const ClientInfo& client) {
  if (token.empty()) return absl::InvalidArgumentError("token: required");
  if (token.size() != kLoginIdChars) {
    return absl::NotFoundError("token: unknown, used or expired; register again");
  }
  auto id = NewAccountId();
  if (!id.ok()) return id.status();
  Account account{.account_id = *id,
                  .assurance_level = AssuranceLevel::kLow,
                  .created_at = TruncateToMicros(clock_->Now())};
  return store_->ConfirmRegistration(
      Sha256(token), std::move(account),
      auth::AuditEventOf(Caller{}, "identity.account.register", "", client, "ok", ""));
}

absl::StatusOr<OutboxRun> Identity::DeliverOutbox(Mailer& mailer, int max) {
  return ::qsign::DeliverOutbox(
      mailer, max, "identity",
      [&](int64_t after, absl::FunctionRef<absl::Status(const OutboxMessage&)> send) {
        return store_->DeliverNextOutbox(after, clock_->Now(), send);
      });
}

absl::StatusOr<ProofIdentityResult> Identity::ProofIdentity(const Caller& caller,
                                                            const ProofIdentityInput& in,
                                                            const ClientInfo& client) {
  if (auto s = RequireOperatorOn(caller, in.account_id); !s.ok()) return s;
  if (in.assurance_level != AssuranceLevel::kSubstantial &&
      in.assurance_level != AssuranceLevel::kHigh) {
    return absl::InvalidArgumentError(
        "assurance_level: SUBSTANTIAL or HIGH (HIGH for in-person proofing)");
  }
  if (in.document_type == DocumentType::kUnspecified) {
    return absl::InvalidArgumentError(
        "evidence.document_type: required (NATIONAL_ID_CARD or PASSPORT)");
  }
  if (in.document_number.empty() || in.document_number.size() > 32) {
    return absl::InvalidArgumentError("evidence.document_number: 1..32 characters");
  }
  for (char c : in.document_number) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '/') {
      return absl::InvalidArgumentError(
          "evidence.document_number: letters, digits, '-' and '/' only");
    }
  }
  if (auto s = ValidateFreeText("evidence.note", in.note, 500); !s.ok()) return s;

  auto symbols = NewActivationCodeSymbols();
  if (!symbols.ok()) return symbols.status();
  const absl::Time now = TruncateToMicros(clock_->Now());
  const absl::Time code_expires = now + config_.activation_code_lifetime;
  ProofingRecord record{.account_id = in.account_id,
                        .operator_id = caller.id,
                        .assurance_level = in.assurance_level,
                        .document_type = in.document_type,
                        .document_number = in.document_number,
                        .note = in.note,
                        .proofed_at = now,
                        .activation_code_sha256 = Sha256(symbols->value()),
                        .activation_code_expires_at = code_expires};
  auto account = store_->RecordProofing(
      record,
      [&](const Account& current) -> absl::Status {
        if (static_cast<int>(in.assurance_level) < static_cast<int>(current.assurance_level)) {
          return absl::FailedPreconditionError(
              absl::StrCat("assurance_level: ", Av(AssuranceLevelName(in.assurance_level)),
                           " is below the account's current level ",
                           Av(AssuranceLevelName(current.assurance_level))));
        }
        return absl::OkStatus();
      },
      auth::AuditEventOf(
          caller, "identity.proof", in.account_id, client, "ok",
          absl::StrCat("level=", Av(AssuranceLevelName(in.assurance_level)),
                       " document=", Av(DocumentTypeName(in.document_type)),
                       " number=", in.document_number, in.note.empty() ? "" : " note=", in.note)));
  if (!account.ok()) return account.status();
  return ProofIdentityResult{
      .account = *std::move(account),
      .activation_code = SecretString(FormatActivationCode(symbols->value())),
      .activation_code_expires_at = code_expires};
}

absl::StatusOr<Account> Identity::CorrectIdentity(const Caller& caller,
                                                  const CorrectIdentityInput& in,
                                                  const ClientInfo& client) {
  if (auto s = RequireOperatorOn(caller, in.account_id); !s.ok()) return s;
  const absl::Time now = TruncateToMicros(clock_->Now());
  if (auto s = ValidatePersonData(in.given_name, in.surname, in.national_id,
                                  absl::ToCivilDay(now, absl::UTCTimeZone()));
      !s.ok()) {
    return s;
  }
  if (auto s = ValidateFreeText("note", in.note, 500); !s.ok()) return s;
  if (auto s = correction_limiter_.Acquire(caller.id, now, "too many corrections by this operator");
      !s.ok()) {
    return s;
  }
  const Account corrected{.account_id = in.account_id,
                          .given_name = in.given_name,
                          .surname = in.surname,
                          .national_id = in.national_id};
  return store_->CorrectIdentity(
      corrected, now, [&](const Account& current) -> absl::StatusOr<db::AuditEvent> {
        if (current.proofed_at.has_value()) {
          return absl::FailedPreconditionError(
              "account_id: already proofed; the name and national id are bound to the document "
              "checked then");
        }
        std::vector<std::string> changes;
        auto change = [&](std::string_view field, const std::string& from, const std::string& to) {
          if (from != to) changes.push_back(absl::StrCat(Av(field), ": ", from, " -> ", to));
        };
        change("given_name", current.given_name, in.given_name);
        change("surname", current.surname, in.surname);
        change("national_id", current.national_id, in.national_id);
        if (changes.empty()) {
          return absl::InvalidArgumentError(
              "given_name, surname, national_id: nothing to correct (all as registered)");
        }
        if (!in.note.empty()) changes.push_back(absl::StrCat("note: ", in.note));
        return auth::AuditEventOf(caller, "identity.correct", in.account_id, client, "ok",
                                  absl::StrJoin(changes, "; "));
      });
}

absl::StatusOr<AuditPage> Identity::ListAccountAudit(const Caller& caller,
                                                     std::string_view account_id, int page_size,
                                                     std::string_view page_token) {
  if (auto s = RequireOperatorOn(caller, account_id); !s.ok()) return s;
  auto size = db::AccountAuditPageSize(page_size, page_token);
  if (!size.ok()) return size.status();
  if (auto account = store_->GetAccountById(account_id); !account.ok()) return account.status();
  return store_->ListAccountAudit(account_id, *size, page_token);
}

absl::StatusOr<Account> Identity::GetAccount(const Caller& caller, std::string_view account_id,
                                             std::string_view username) {
  if (auto s = Require(caller, {CallerKind::kUser, CallerKind::kOperator, CallerKind::kService},
                       "a session token, operator or service");
      !s.ok()) {
    return s;
  }
  if (caller.kind == CallerKind::kUser) {
    auto own = store_->GetAccountById(caller.id);
    if (!own.ok()) return own.status();
    // Another account answers as if it did not exist.
    if ((!account_id.empty() && account_id != own->account_id) ||
        (!username.empty() && NormalizeUsername(username) != own->username)) {
      return absl::NotFoundError("no such account");
    }
    return own;
  }
  if (account_id.empty() == username.empty()) {
    return absl::InvalidArgumentError("account_id, username: set exactly one");
  }
  if (!account_id.empty()) return store_->GetAccountById(account_id);
  return store_->GetAccountByUsername(NormalizeUsername(username));
}

void Identity::RecordConsentLatency(absl::Duration d) {
  d = std::min(d, kMaxLatencyPadding);
  absl::MutexLock lock(&mu_);
  consent_latency_ = (consent_latency_ * 7 + d) / 8;
}

absl::Duration Identity::TypicalConsentLatency() {
  absl::MutexLock lock(&mu_);
  return consent_latency_;
}

absl::StatusOr<LoginStart> Identity::StartLogin(std::string_view username, const ClientInfo& client,
                                                std::string_view language) {
  if (username.empty()) return absl::InvalidArgumentError("username: required");
  if (username.size() > 254) return absl::InvalidArgumentError("username: at most 254 characters");
  if (auto lang = consent::ParseDisplayLanguage(language); !lang.ok()) return lang.status();
  const std::string normalized = NormalizeUsername(username);
  // Both limits count before anything is looked up: the answer is the same for every username.
  if (auto s = login_address_limiter_.Acquire(auth::KeyAddress(client), clock_->Now(),
                                              "too many logins from this address");
      !s.ok()) {
    return s;
  }
  if (auto s = login_account_limiter_.Acquire(normalized, clock_->Now(),
                                              "too many logins for this username");
      !s.ok()) {
    return s;
  }
  auto login_id = NewLoginId();
  if (!login_id.ok()) return login_id.status();
  auto code = NewVerificationCode();
  if (!code.ok()) return code.status();
  const absl::Time now = TruncateToMicros(clock_->Now());
  LoginRecord login{.login_id_sha256 = Sha256(*login_id),
                    .state = LoginState::kPending,
                    .created_at = now,
                    .expires_at = now + config_.login_lifetime};

  auto account = store_->GetAccountByUsername(normalized);
  if (!account.ok() && account.status().code() != absl::StatusCode::kNotFound) {
    return account.status();
  }
  const bool known = account.ok();
  // The same work whatever the username: one consent call. For an unknown username it names an
  // account id nobody has, which consent answers exactly as an account without a device.
  std::string consent_account;
  if (known) {
    consent_account = account->account_id;
  } else {
    auto nobody = NewAccountId();
    if (!nobody.ok()) return nobody.status();
    consent_account = *std::move(nobody);
  }
  const absl::Time started = absl::Now();
  auto request = consent_->CreateLoginRequest({.account_id = consent_account,
                                               .verification_code = *code,
                                               .client_description = DescribeClient(client),
                                               .language = std::string(language),
                                               .lifetime = config_.login_lifetime});
  const absl::Duration took = absl::Now() - started;
  std::string target = known ? account->account_id : "";
  std::string outcome;
  if (request.ok() && known) {
    RecordConsentLatency(took);
    login.account_id = account->account_id;
    login.consent_request_id = request->request_id;
    outcome = "ok";
  } else {
    // Nothing was pushed: wait as long as a push takes, so that timing does not tell an unknown
    // username, an account without a device and a real push apart.
    const absl::Duration pad = TypicalConsentLatency() - took;
    if (pad > absl::ZeroDuration()) absl::SleepFor(pad);
    if (!known) {
      outcome = "unknown_username";
      if (request.ok()) {
        Log(LogLevel::kError, "identity", "consent pushed a login for an account id nobody has",
            {{"request_id", request->request_id}});
      }
    } else if (request.status().code() == absl::StatusCode::kFailedPrecondition) {
      outcome = "no_active_device";
    } else {
      // The caller gets a login that ends EXPIRED, as for an unknown username: an error here
      // would tell that the account exists.
      Log(LogLevel::kError, "identity", "consent CreateRequest failed",
          {{"account_id", account->account_id}, {"status", request.status().ToString()}});
      outcome = absl::StrCat("consent_error:", absl::StatusCodeToString(request.status().code()));
    }
  }
  if (auto s =
          store_->CreateLogin(login, auth::AuditEventOf(Caller{}, "identity.login.start", target,
                                                        client, outcome, DescribeClient(client)));
      !s.ok()) {
    return s;
  }
  // What GetLogin would read back (it reads the level with the login).
  if (!login.account_id.empty()) login.assurance_level = account->assurance_level;
  recent_logins_.Add(login.login_id_sha256, login);
  return LoginStart{.login_id = *std::move(login_id),
                    .verification_code = *std::move(code),
                    .expires_at = login.expires_at};
}

absl::StatusOr<LoginOutcome> Identity::CompletedLogin(std::string_view login_id_sha256) {
  auto login = store_->GetLogin(login_id_sha256);
  if (!login.ok()) return login.status();
  if (login->state == LoginState::kApproved) return absl::FailedPreconditionError(kHandedOut);
  LoginOutcome out;
  out.state = login->state;
  return out;
}

absl::StatusOr<LoginOutcome> Identity::FinishLogin(const LoginRecord& login, LoginState state,
                                                   const ConsentRequestStatus* approval) {
  const absl::Time now = TruncateToMicros(clock_->Now());
  Caller owner;
  if (!login.account_id.empty()) {
    owner = Caller{.kind = CallerKind::kUser, .id = login.account_id};
  }
  if (state == LoginState::kApproved) {
    AssuranceLevel level = login.assurance_level;
    auto session_id = NewSessionId();
    if (!session_id.ok()) return session_id.status();
    SessionClaims claims{.session_id = *session_id,
                         .account_id = login.account_id,
                         .issued_at = now,
                         .auth_time = TruncateToMicros(approval->decided_at.value_or(now))};
    // The session runs from the approval on the phone: a token picked up late is shorter-lived.
    claims.expires_at = claims.auth_time + config_.session_lifetime;
    // The level read with the login; once more if a proofing changed it meanwhile.
    for (int attempt = 0; claims.expires_at > now; ++attempt) {
      claims.assurance_level = static_cast<int>(level);
      auto token = minter_->Mint(claims);
      if (!token.ok()) return token.status();
      SessionRecord record{.session_id = claims.session_id,
                           .account_id = claims.account_id,
                           .key_id = minter_->key_id(),
                           .issued_at = claims.issued_at,
                           .auth_time = claims.auth_time,
                           .expires_at = claims.expires_at,
                           .assurance_level = level};
      auto s = store_->FinishLogin(
          login.login_id_sha256, LoginState::kApproved, now, &record,
          auth::AuditEventOf(owner, "identity.session.issue", login.account_id, ClientInfo{}, "ok",
                             absl::StrCat("session=", claims.session_id,
                                          " consent_request=", login.consent_request_id)));
      if (s.code() == absl::StatusCode::kAborted && attempt == 0) {
        auto account = store_->GetAccountById(login.account_id);
        if (!account.ok()) return account.status();
        level = account->assurance_level;
        continue;
      }
      if (s.code() == absl::StatusCode::kFailedPrecondition) {
        return CompletedLogin(login.login_id_sha256);
      }
      if (!s.ok()) return s;
      LoginOutcome out;
      out.state = LoginState::kApproved;
      out.session_token = SecretString(*std::move(token));
      out.session_expires_at = claims.expires_at;
      out.account_id = login.account_id;
      return out;
    }
    state = LoginState::kExpired;
  }
  auto s = store_->FinishLogin(
      login.login_id_sha256, state, now, nullptr,
      auth::AuditEventOf(owner, "identity.login.finish", login.account_id, ClientInfo{},
                         absl::AsciiStrToLower(Av(LoginStateName(state))),
                         login.consent_request_id.empty()
                             ? ""
                             : absl::StrCat("consent_request=", login.consent_request_id)));
  if (s.code() == absl::StatusCode::kFailedPrecondition) {
    return CompletedLogin(login.login_id_sha256);
  }
  if (!s.ok()) return s;
  LoginOutcome out;
  out.state = state;
  return out;
}

std::shared_ptr<LoginWait> Identity::AwaitLogin(std::string login_id, absl::Duration max_wait,
                                                TaskRunner* runner, LoginOutcomeDone done) {
  auto wait = std::make_shared<LoginWait>();
  runner->Post([this, wait, runner, login_id = std::move(login_id), max_wait,
                done = std::move(done)]() mutable {
    if (login_id.empty()) {
      return std::move(done)(absl::InvalidArgumentError("login_id: required"));
    }
    if (login_id.size() != kLoginIdChars) {
      return std::move(done)(
          absl::InvalidArgumentError("login_id: not a login id from StartLogin"));
    }
    max_wait = std::clamp(max_wait, absl::ZeroDuration(), config_.max_await);
    // A login started here lately is taken as it was stored (the first AwaitLogin only; any
    // other reads). Whatever happened to it since is still found: FinishLogin changes only a
    // PENDING login, and a login ended meanwhile makes consent's request end too.
    const std::string login_id_sha256 = Sha256(login_id);
    absl::StatusOr<LoginRecord> login = absl::NotFoundError("");
    if (auto recent = recent_logins_.Take(login_id_sha256); recent.has_value()) {
      login = *std::move(recent);
    } else {
      login = store_->GetLogin(login_id_sha256);
    }
    if (!login.ok()) return std::move(done)(login.status());
    if (login->state == LoginState::kApproved) {
      return std::move(done)(absl::FailedPreconditionError(kHandedOut));
    }
    if (login->state != LoginState::kPending) {
      LoginOutcome out;
      out.state = login->state;
      return std::move(done)(std::move(out));
    }

    const absl::Duration remaining = login->expires_at - clock_->Now();
    if (login->consent_request_id.empty()) {
      // Nobody can approve this login. Wait as a real one would (a timer, or until the caller
      // goes away), then let it expire.
      auto answer = std::make_shared<absl::AnyInvocable<void() &&>>(
          [this, login = *login, done = std::move(done)]() mutable {
            if (clock_->Now() >= login.expires_at) {
              return std::move(done)(FinishLogin(login, LoginState::kExpired, nullptr));
            }
            std::move(done)(LoginOutcome{});
          });
      auto once = std::make_shared<absl::once_flag>();
      auto run = [answer, once] { absl::call_once(*once, [&] { std::move (*answer)(); }); };
      const absl::Duration wait_for = std::min(max_wait, remaining);
      if (wait_for <= absl::ZeroDuration()) return run();
      runner->PostAt(absl::Now() + wait_for, run);
      wait->SetCancel([runner, run] { runner->Post(run); });
      return;
    }
    // gRPC's thread answers; the login's database work goes back to the runner.
    auto answered = [this, runner, login = *login, done = std::move(done),
                     id = std::string(request_id::Current())](
                        absl::StatusOr<ConsentRequestStatus> status) mutable {
      request_id::ScopedRequestId scope(std::move(id));
      runner->Post([this, login = std::move(login), status = std::move(status),
                    done = std::move(done)]() mutable {
        std::move(done)(LoginAfterConsent(login, status));
      });
    };
    wait->SetCancel(consent_->StartAwaitRequest(
        login->consent_request_id, std::clamp(remaining, absl::ZeroDuration(), max_wait),
        std::move(answered)));
  });
  return wait;
}

absl::StatusOr<LoginOutcome> Identity::LoginAfterConsent(
    const LoginRecord& login, const absl::StatusOr<ConsentRequestStatus>& status) {
  if (!status.ok()) return status.status();
  if (!status->account_id.empty() && status->account_id != login.account_id) {
    return absl::InternalError(
        absl::StrCat("consent request ", login.consent_request_id, " belongs to another account"));
  }
  switch (status->state) {
    case ConsentState::kApproved:
      return FinishLogin(login, LoginState::kApproved, &*status);
    case ConsentState::kDenied:
    case ConsentState::kCancelled:
      return FinishLogin(login, LoginState::kDenied, nullptr);
    case ConsentState::kExpired:
      return FinishLogin(login, LoginState::kExpired, nullptr);
    case ConsentState::kPending:
      // Consent decides expiry; this only guards against a consent service that never does.
      if (clock_->Now() >= login.expires_at + kMaxClockSkew) {
        return FinishLogin(login, LoginState::kExpired, nullptr);
      }
      return LoginOutcome{};
  }
  return absl::InternalError("unreachable consent state");
}

absl::Status Identity::Logout(const Caller& caller, const ClientInfo& client) {
  if (auto s = Require(caller, {CallerKind::kUser}, "a user session"); !s.ok()) return s;
  const absl::Time now = TruncateToMicros(clock_->Now());
  auto ended = store_->EndSession(
      caller.session.session_id, now, caller.session.expires_at,
      auth::AuditEventOf(caller, "identity.session.logout", caller.id, client, "ok",
                         absl::StrCat("session=", caller.session.session_id)));
  return ended.status();
}

absl::StatusOr<SessionInfo> Identity::ValidateSession(const Caller& caller,
                                                      std::string_view token) {
  if (auto s = Require(caller, {CallerKind::kService}, "service"); !s.ok()) return s;
  if (token.empty()) return absl::InvalidArgumentError("session_token: required");
  auto claims = Verify(token, /*allow_revoked=*/false);
  if (!claims.ok()) return claims.status();
  SessionInfo info;
  info.fresh = IsFresh(*claims, clock_->Now(), config_.fresh_login_window);
  info.claims = *std::move(claims);
  return info;
}

absl::StatusOr<int> Identity::RevokeSessions(const Caller& caller, std::string_view account_id,
                                             const ClientInfo& client) {
  if (auto s = Require(caller, {CallerKind::kService}, "service"); !s.ok()) return s;
  if (account_id.empty()) return absl::InvalidArgumentError("account_id: required");
  if (account_id.size() > 64) return absl::InvalidArgumentError("account_id: too long");
  const absl::Time now = TruncateToMicros(clock_->Now());
  // Every token it covers was issued by now, so expires by now + session_lifetime.
  return store_->RevokeAccountSessions(
      account_id, now, now + config_.session_lifetime + kMaxClockSkew,
      auth::AuditEventOf(caller, "identity.session.revoke_all", std::string(account_id), client));
}

absl::StatusOr<std::vector<SessionKeyInfo>> Identity::GetSessionKeys(const Caller& caller) {
  if (auto s = Require(caller, {CallerKind::kService}, "service"); !s.ok()) return s;
  // Every configured key stays trusted for one session lifetime after this answer.
  const absl::Time not_after = clock_->Now() + config_.session_lifetime;
  std::vector<SessionKeyInfo> keys = keys_;
  for (auto& k : keys) k.not_after = not_after;
  return keys;
}

absl::StatusOr<RevocationPage> Identity::ListSessionRevocations(const Caller& caller,
                                                                uint64_t after_sequence) {
  if (auto s = Require(caller, {CallerKind::kService}, "service"); !s.ok()) return s;
  auto entries = store_->ListRevocations(after_sequence, clock_->Now(), kRevocationPageSize);
  if (!entries.ok()) return entries.status();
  RevocationPage page;
  page.last_sequence = entries->empty() ? after_sequence : entries->back().sequence;
  page.revocations = *std::move(entries);
  return page;
}

absl::StatusOr<int> Identity::ExpireUnproofedAccounts() {
  constexpr int kBatch = 1000;
  const absl::Time now = TruncateToMicros(clock_->Now());
  // Links nobody opened: their registrations never became accounts.
  if (auto links = store_->DeleteExpiredRegistrations(now); !links.ok()) return links.status();
  int total = 0;
  for (;;) {
    auto expired = store_->ExpireUnproofedAccounts(
        now - config_.unproofed_account_lifetime, kBatch, now,
        auth::AuditEventOf(Caller{.kind = CallerKind::kService, .id = "identity"},
                           "identity.account.expire", "", ClientInfo{}, "ok",
                           absl::StrCat("never proofed within ",
                                        absl::FormatDuration(config_.unproofed_account_lifetime))));
    if (!expired.ok()) return expired.status();
    total += static_cast<int>(expired->size());
    if (static_cast<int>(expired->size()) < kBatch) return total;
  }
}

absl::StatusOr<RedeemedActivationCode> Identity::RedeemActivationCode(
    const Caller& caller, std::string_view activation_code, std::string_view device_key_sha256,
    const ClientInfo& client) {
  if (auto s = Require(caller, {CallerKind::kService}, "the consent service"); !s.ok()) return s;
  if (caller.id != config_.consent_client_id) {
    return absl::PermissionDeniedError("this call is for the consent service only");
  }
  if (activation_code.empty()) return absl::InvalidArgumentError("activation_code: required");
  if (device_key_sha256.size() != 32) {
    return absl::InvalidArgumentError(
        "device_key_sha256: 32 bytes (SHA-256 of the device key's SubjectPublicKeyInfo)");
  }
  SecretString normalized(NormalizeActivationCode(activation_code));
  if (normalized.empty()) {
    return absl::NotFoundError("activation_code: unknown, already used or expired");
  }
  return store_->RedeemActivationCode(
      Sha256(normalized.value()), device_key_sha256, TruncateToMicros(clock_->Now()),
      auth::AuditEventOf(
          caller, "identity.activation_code.redeem", "", client, "ok",
          absl::StrCat("device_key_sha256=", absl::BytesToHexString(Av(device_key_sha256)))));
}

}  // namespace qsign::identity
