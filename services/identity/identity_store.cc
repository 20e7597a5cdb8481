#include "services/identity/identity_store.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "common/echo.h"
#include "common/strings.h"

namespace qsign::identity {
namespace {

using db::Param;

constexpr std::string_view kSchema = "identity";

constexpr char kAccountColumns[] =
    "account_id, username, given_name, surname, national_id, certificate_email, "
    "assurance_level, proofed_at, created_at";

// The logins journal (see kV2): one append-only row per login event, written in the statement
// that makes the change. Followed by a SELECT of the login id hash, the time and the event's
// six values (JournalValues).
constexpr char kJournalInsert[] =
    "INSERT INTO identity.login_journal (login_id_sha256, at, actor, action, target, "
    "client_address, outcome, details) ";

// "$first, ..., $first+5": the journal event's six parameters.
std::string JournalValues(int first) {
  std::string out;
  for (int i = 0; i < 6; ++i) absl::StrAppend(&out, i == 0 ? "$" : ", $", first + i);
  return out;
}

// The journal event's six parameters, in JournalValues order.
void AppendEvent(std::vector<db::Param>& params, const db::AuditEvent& e) {
  for (const std::string* f :
       {&e.actor, &e.action, &e.target, &e.client_address, &e.outcome, &e.details}) {
    params.push_back(db::Param::Text(*f));
  }
}

absl::Status Invariant(std::string_view what) {
  return absl::InternalError(absl::StrCat("identity store: ", Av(what)));
}

absl::StatusOr<AssuranceLevel> ParseLevel(int64_t v) {
  if (v < 1 || v > 3) return Invariant(absl::StrCat("unknown assurance level ", v));
  return static_cast<AssuranceLevel>(v);
}

absl::StatusOr<LoginState> ParseLoginState(std::string_view s) {
  if (s == "PENDING") return LoginState::kPending;
  if (s == "APPROVED") return LoginState::kApproved;
  if (s == "DENIED") return LoginState::kDenied;
  if (s == "EXPIRED") return LoginState::kExpired;
  return Invariant(absl::StrCat("unknown login state ", Av(s)));
}

absl::StatusOr<Account> ReadAccount(const db::Result& r, int row) {
  Account a;
  a.account_id = std::string(r.Get(row, 0));
  a.username = std::string(r.Get(row, 1));
  a.given_name = std::string(r.Get(row, 2));
  a.surname = std::string(r.Get(row, 3));
  a.national_id = std::string(r.Get(row, 4));
  a.certificate_email = std::string(r.Get(row, 5));
  auto level = r.GetInt64(row, 6);
  if (!level.ok()) return level.status();
  auto parsed = ParseLevel(*level);
  if (!parsed.ok()) return parsed.status();
  a.assurance_level = *parsed;
  if (!r.IsNull(row, 7)) {
    auto t = r.GetTime(row, 7);
    if (!t.ok()) return t.status();
    a.proofed_at = *t;
  }
  auto created = r.GetTime(row, 8);
  if (!created.ok()) return created.status();
  a.created_at = *created;
  return a;
}

absl::Status NoAccount(std::string_view account_id) {
  return absl::NotFoundError(absl::StrCat("account_id: no account ", Echo(account_id)));
}

absl::Status NationalIdBound() {
  return absl::FailedPreconditionError(
      "national_id: already bound to another proofed account (one proofed account per person; "
      "that account's holder must be re-proofed or the duplicate closed)");
}

absl::Status CodeNotValid() {
  return absl::NotFoundError("activation_code: unknown, already used or expired");
}

// Publishes one feed entry. The counter row is locked until COMMIT, so entries become visible in
// sequence order: a poller that has seen N never misses N-1.
absl::Status AppendRevocation(db::Tx& tx, std::string_view session_id, std::string_view account_id,
                              absl::Time at, absl::Time keep_until) {
  auto seq = tx.Exec("UPDATE identity.revocation_sequence SET last = last + 1 RETURNING last");
  if (!seq.ok()) return seq.status();
  auto next = seq->GetInt64(0, 0);
  if (!next.ok()) return next.status();
  auto ins = tx.Exec(
      "INSERT INTO identity.session_revocations (sequence, session_id, account_id, revoked_at, "
      "keep_until) VALUES ($1, $2, $3, $4, $5)",
      {Param::Int(*next), session_id.empty() ? Param::Null() : Param::Text(session_id),
       Param::Text(account_id), Param::Time(at), Param::Time(keep_until)});
  if (!ins.ok()) return ins.status();
  // Entries nobody needs any more.
  auto purge =
      tx.Exec("DELETE FROM identity.session_revocations WHERE keep_until < $1", {Param::Time(at)});
  return purge.status();
}

class PostgresIdentityStore final : public IdentityStore {
 public:
  explicit PostgresIdentityStore(db::Pool* pool) : pool_(pool) {}

  absl::Status QueueRegistration(const PendingRegistration* r, const OutboxMessage& m,
                                 const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      if (r != nullptr) {
        auto ins = tx.Exec(
            "INSERT INTO identity.registrations (token_sha256, username, given_name, surname, "
            "national_id, certificate_email, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            {Param::Bytes(r->token_sha256), Param::Text(r->username), Param::Text(r->given_name),
             Param::Text(r->surname), Param::Text(r->national_id),
             Param::Text(r->certificate_email), Param::Time(r->created_at),
             Param::Time(r->expires_at)});
        if (!ins.ok()) return ins.status();
      }
      auto mail = tx.Exec(
          "INSERT INTO identity.outbox (kind, recipient, subject, body, created_at) "
          "VALUES ($1, $2, $3, $4, $5)",
          {Param::Text(m.kind), Param::Text(m.recipient), Param::Text(m.subject),
           Param::Text(m.body), Param::Time(m.created_at)});
      if (!mail.ok()) return mail.status();
      return db::AppendAudit(tx, kSchema, audit, m.created_at);
    });
  }

  absl::StatusOr<Account> ConfirmRegistration(std::string_view token_sha256, Account a,
                                              const db::AuditEvent& audit) override {
    absl::Status taken;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      taken = absl::OkStatus();
      auto reg = tx.Exec(
          "DELETE FROM identity.registrations WHERE token_sha256 = $1 AND expires_at > $2 "
          "RETURNING username, given_name, surname, national_id, certificate_email",
          {Param::Bytes(token_sha256), Param::Time(a.created_at)});
      if (!reg.ok()) return reg.status();
      if (reg->rows() == 0) {
        return absl::NotFoundError("token: unknown, used or expired; register again");
      }
      a.username = std::string(reg->Get(0, 0));
      a.given_name = std::string(reg->Get(0, 1));
      a.surname = std::string(reg->Get(0, 2));
      a.national_id = std::string(reg->Get(0, 3));
      a.certificate_email = std::string(reg->Get(0, 4));
      auto res = tx.Exec(
          "INSERT INTO identity.accounts (account_id, username, given_name, surname, "
          "national_id, certificate_email, assurance_level, created_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (username) DO NOTHING RETURNING 1",
          {Param::Text(a.account_id), Param::Text(a.username), Param::Text(a.given_name),
           Param::Text(a.surname), Param::Text(a.national_id), Param::Text(a.certificate_email),
           Param::Int(static_cast<int>(a.assurance_level)), Param::Time(a.created_at)});
      if (!res.ok()) return res.status();
      db::AuditEvent event = audit;
      event.target = a.account_id;
      if (res->rows() == 0) {
        // Consumed anyway: the link is single-use whatever happens.
        taken = absl::AlreadyExistsError("username: already registered; log in instead");
        event.target.clear();
        event.outcome = "username_taken";
      }
      event.details = absl::StrCat("username=", a.username);
      return db::AppendAudit(tx, kSchema, event, a.created_at);
    });
    if (!s.ok()) return s;
    if (!taken.ok()) return taken;
    return a;
  }

  absl::StatusOr<int> DeleteExpiredRegistrations(absl::Time now) override {
    auto res = pool_->Exec("DELETE FROM identity.registrations WHERE expires_at <= $1",
                           {Param::Time(now)});
    if (!res.ok()) return res.status();
    return res->affected_rows();
  }

  absl::StatusOr<std::optional<OutboxAttempt>> DeliverNextOutbox(
      int64_t after_id, absl::Time now,
      absl::FunctionRef<absl::Status(const OutboxMessage&)> send) override {
    std::optional<OutboxAttempt> attempt;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      attempt.reset();
      auto res = tx.Exec(
          "SELECT id, kind, recipient, subject, body, created_at FROM identity.outbox "
          "WHERE sent_at IS NULL AND id > $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
          {Param::Int(after_id)});
      if (!res.ok()) return res.status();
      if (res->rows() == 0) return absl::OkStatus();
      OutboxMessage m;
      auto id = res->GetInt64(0, 0);
      if (!id.ok()) return id.status();
      m.id = *id;
      m.kind = std::string(res->Get(0, 1));
      m.recipient = std::string(res->Get(0, 2));
      m.subject = std::string(res->Get(0, 3));
      m.body = std::string(res->Get(0, 4));
      absl::Status sent = send(m);
      attempt = OutboxAttempt{.id = m.id, .result = sent};
      if (sent.ok()) {
        return tx
            .Exec(
                "UPDATE identity.outbox SET sent_at = $2, body = '', attempts = attempts + 1 "
                "WHERE id = $1",
                {Param::Int(m.id), Param::Time(now)})
            .status();
      }
      return tx
          .Exec("UPDATE identity.outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                {Param::Int(m.id), Param::Text(sent.ToString())})
          .status();
    });
    if (!s.ok()) return s;
    return attempt;
  }

  absl::StatusOr<std::vector<std::string>> ExpireUnproofedAccounts(
      absl::Time created_before, int limit, absl::Time now, const db::AuditEvent& audit) override {
    std::vector<std::string> expired;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      expired.clear();
      // Never proofed, so no code, device, session or approved login hangs on them.
      auto res = tx.Exec(
          "DELETE FROM identity.accounts WHERE account_id IN ("
          "SELECT a.account_id FROM identity.accounts a WHERE a.proofed_at IS NULL "
          "AND a.created_at < $1 AND NOT EXISTS (SELECT 1 FROM identity.logins l "
          "WHERE l.account_id = a.account_id) ORDER BY a.created_at LIMIT $2 FOR UPDATE) "
          "RETURNING account_id",
          {Param::Time(created_before), Param::Int(limit)});
      if (!res.ok()) return res.status();
      for (int i = 0; i < res->rows(); ++i) {
        expired.emplace_back(res->Get(i, 0));
        db::AuditEvent event = audit;
        event.target = expired.back();
        if (auto a = db::AppendAudit(tx, kSchema, event, now); !a.ok()) return a;
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return expired;
  }

  absl::StatusOr<Account> GetAccountById(std::string_view account_id) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kAccountColumns, " FROM identity.accounts WHERE account_id = $1"),
        {Param::Text(account_id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return NoAccount(account_id);
    return ReadAccount(*res, 0);
  }

  absl::StatusOr<Account> GetAccountByUsername(std::string_view username) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kAccountColumns, " FROM identity.accounts WHERE username = $1"),
        {Param::Text(username)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError("username: no such account");
    return ReadAccount(*res, 0);
  }

  absl::StatusOr<Account> CorrectIdentity(
      const Account& corrected, absl::Time at,
      absl::FunctionRef<absl::StatusOr<db::AuditEvent>(const Account&)> decide) override {
    Account updated;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto cur = tx.Exec(absl::StrCat("SELECT ", kAccountColumns,
                                      " FROM identity.accounts WHERE account_id = $1 FOR UPDATE"),
                         {Param::Text(corrected.account_id)});
      if (!cur.ok()) return cur.status();
      if (cur->rows() == 0) return NoAccount(corrected.account_id);
      auto account = ReadAccount(*cur, 0);
      if (!account.ok()) return account.status();
      auto audit = decide(*account);
      if (!audit.ok()) return audit.status();
      if (auto r = tx.Exec("UPDATE identity.accounts SET given_name = $2, surname = $3, "
                           "national_id = $4 WHERE account_id = $1",
                           {Param::Text(corrected.account_id), Param::Text(corrected.given_name),
                            Param::Text(corrected.surname), Param::Text(corrected.national_id)});
          !r.ok()) {
        return r.status();
      }
      updated = *std::move(account);
      updated.given_name = corrected.given_name;
      updated.surname = corrected.surname;
      updated.national_id = corrected.national_id;
      return db::AppendAudit(tx, kSchema, *audit, at);
    });
    if (!s.ok()) return s;
    return updated;
  }

  absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                 std::string_view page_token) override {
    return db::ListAuditRecords(*pool_,
                                {.tables = {{"identity.audit_log"}, {"identity.login_journal"}},
                                 .targets = {std::string(account_id)},
                                 .actors = {absl::StrCat("account:", Av(account_id))},
                                 .page_size = page_size,
                                 .page_token = page_token});
  }

  absl::StatusOr<Account> RecordProofing(const ProofingRecord& p,
                                         absl::FunctionRef<absl::Status(const Account&)> check,
                                         const db::AuditEvent& audit) override {
    Account updated;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto cur = tx.Exec(absl::StrCat("SELECT ", kAccountColumns,
                                      " FROM identity.accounts WHERE account_id = $1 FOR UPDATE"),
                         {Param::Text(p.account_id)});
      if (!cur.ok()) return cur.status();
      if (cur->rows() == 0) return NoAccount(p.account_id);
      auto account = ReadAccount(*cur, 0);
      if (!account.ok()) return account.status();
      if (auto c = check(*account); !c.ok()) return c;
      // The proofing binds the national id: one proofed account per person.
      auto bound = tx.Exec(
          "SELECT 1 FROM identity.accounts WHERE national_id = $1 AND proofed_at IS NOT NULL "
          "AND account_id <> $2",
          {Param::Text(account->national_id), Param::Text(p.account_id)});
      if (!bound.ok()) return bound.status();
      if (bound->rows() > 0) return NationalIdBound();
      const auto level = Param::Int(static_cast<int>(p.assurance_level));
      const auto at = Param::Time(p.proofed_at);
      const auto id = Param::Text(p.account_id);
      if (auto r = tx.Exec("UPDATE identity.accounts SET assurance_level = $2, proofed_at = $3 "
                           "WHERE account_id = $1",
                           {id, level, at});
          !r.ok()) {
        // A concurrent proofing of another account with the same national id won.
        if (r.status().code() == absl::StatusCode::kAlreadyExists) return NationalIdBound();
        return r.status();
      }
      if (auto r =
              tx.Exec("INSERT INTO identity.proofings (account_id, operator_id, assurance_level, "
                      "document_type, document_number, note, proofed_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                      {id, Param::Text(p.operator_id), level,
                       Param::Text(DocumentTypeName(p.document_type)),
                       Param::Text(p.document_number), Param::Text(p.note), at});
          !r.ok()) {
        return r.status();
      }
      // Earlier codes stop working, used or not: only the newest code enrols (or re-enrols).
      if (auto r = tx.Exec("UPDATE identity.activation_codes SET cancelled_at = $2 "
                           "WHERE account_id = $1 AND cancelled_at IS NULL",
                           {id, at});
          !r.ok()) {
        return r.status();
      }
      if (auto r =
              tx.Exec("INSERT INTO identity.activation_codes (code_sha256, account_id, created_at, "
                      "expires_at) VALUES ($1, $2, $3, $4)",
                      {Param::Bytes(p.activation_code_sha256), id, at,
                       Param::Time(p.activation_code_expires_at)});
          !r.ok()) {
        return r.status();
      }
      updated = *std::move(account);
      updated.assurance_level = p.assurance_level;
      updated.proofed_at = absl::FromUnixMicros(absl::ToUnixMicros(p.proofed_at));
      return db::AppendAudit(tx, kSchema, audit, p.proofed_at);
    });
    if (!s.ok()) return s;
    return updated;
  }

  absl::StatusOr<RedeemedActivationCode> RedeemActivationCode(std::string_view code_sha256,
                                                              std::string_view device_key_sha256,
                                                              absl::Time now,
                                                              db::AuditEvent audit) override {
    RedeemedActivationCode out;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto code = tx.Exec(
          "SELECT c.account_id, c.expires_at, c.cancelled_at IS NOT NULL, "
          "c.redeemed_at IS NOT NULL, c.device_key_sha256, a.assurance_level "
          "FROM identity.activation_codes c JOIN identity.accounts a USING (account_id) "
          "WHERE c.code_sha256 = $1 FOR UPDATE OF c",
          {Param::Bytes(code_sha256)});
      if (!code.ok()) return code.status();
      if (code->rows() == 0) return CodeNotValid();
      auto expires = code->GetTime(0, 1);
      if (!expires.ok()) return expires.status();
      auto cancelled = code->GetBool(0, 2);
      if (!cancelled.ok()) return cancelled.status();
      auto redeemed = code->GetBool(0, 3);
      if (!redeemed.ok()) return redeemed.status();
      auto level = code->GetInt64(0, 5);
      if (!level.ok()) return level.status();
      auto parsed = ParseLevel(*level);
      if (!parsed.ok()) return parsed.status();
      out.account_id = std::string(code->Get(0, 0));
      out.assurance_level = *parsed;
      if (*cancelled || now >= *expires) return CodeNotValid();
      if (*redeemed) {
        auto key = code->GetBytes(0, 4);
        if (!key.ok()) return key.status();
        // The same device retrying a failed enrolment: same answer, nothing changes.
        out.repeated = true;
        return *key == device_key_sha256 ? absl::OkStatus() : CodeNotValid();
      }
      if (auto r = tx.Exec(
              "UPDATE identity.activation_codes SET redeemed_at = $2, device_key_sha256 = $3 "
              "WHERE code_sha256 = $1",
              {Param::Bytes(code_sha256), Param::Time(now), Param::Bytes(device_key_sha256)});
          !r.ok()) {
        return r.status();
      }
      audit.target = out.account_id;
      return db::AppendAudit(tx, kSchema, audit, now);
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status CreateLogin(const LoginRecord& l, const db::AuditEvent& event) override {
    // One statement: the login and its journal row commit together (no audit-chain append).
    static const std::string sql = absl::StrCat(
        "WITH l AS (INSERT INTO identity.logins (login_id_sha256, account_id, consent_request_id, "
        "state, created_at, expires_at) VALUES ($1, $2, $3, 'PENDING', $4, $5) "
        "RETURNING login_id_sha256) ",
        kJournalInsert, "SELECT l.login_id_sha256, $4, ", JournalValues(6), " FROM l");
    std::vector<Param> params = {
        Param::Bytes(l.login_id_sha256),
        l.account_id.empty() ? Param::Null() : Param::Text(l.account_id),
        l.consent_request_id.empty() ? Param::Null() : Param::Text(l.consent_request_id),
        Param::Time(l.created_at), Param::Time(l.expires_at)};
    AppendEvent(params, event);
    return pool_->Exec(sql, params).status();
  }

  absl::StatusOr<LoginRecord> GetLogin(std::string_view login_id_sha256) override {
    auto r = pool_->Exec(
        "SELECT coalesce(l.account_id, ''), coalesce(l.consent_request_id, ''), l.state, "
        "l.created_at, l.expires_at, coalesce(a.assurance_level, 0) FROM identity.logins l "
        "LEFT JOIN identity.accounts a USING (account_id) WHERE l.login_id_sha256 = $1",
        {Param::Bytes(login_id_sha256)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::NotFoundError("login_id: no such login");
    LoginRecord l;
    l.login_id_sha256 = std::string(login_id_sha256);
    l.account_id = std::string(r->Get(0, 0));
    l.consent_request_id = std::string(r->Get(0, 1));
    auto state = ParseLoginState(r->Get(0, 2));
    if (!state.ok()) return state.status();
    l.state = *state;
    auto created = r->GetTime(0, 3);
    if (!created.ok()) return created.status();
    l.created_at = *created;
    auto expires = r->GetTime(0, 4);
    if (!expires.ok()) return expires.status();
    l.expires_at = *expires;
    auto level = r->GetInt64(0, 5);
    if (!level.ok()) return level.status();
    if (!l.account_id.empty()) {
      auto parsed = ParseLevel(*level);
      if (!parsed.ok()) return parsed.status();
      l.assurance_level = *parsed;
    }
    return l;
  }

  absl::Status FinishLogin(std::string_view login_id_sha256, LoginState state, absl::Time at,
                           const SessionRecord* session, const db::AuditEvent& event) override {
    if (session == nullptr) {
      static const std::string sql = absl::StrCat(
          "WITH l AS (UPDATE identity.logins SET state = $2, completed_at = $3 "
          "WHERE login_id_sha256 = $1 AND state = 'PENDING' RETURNING login_id_sha256), j AS (",
          kJournalInsert, "SELECT l.login_id_sha256, $3, ", JournalValues(4),
          " FROM l) SELECT count(*) FROM l");
      std::vector<Param> params = {Param::Bytes(login_id_sha256),
                                   Param::Text(LoginStateName(state)), Param::Time(at)};
      AppendEvent(params, event);
      auto r = pool_->Exec(sql, params);
      if (!r.ok()) return r.status();
      auto n = r->GetInt64(0, 0);
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::FailedPreconditionError("login_id: login completed before");
      return absl::OkStatus();
    }
    if (state != LoginState::kApproved) return Invariant("a session for a login not approved");
    // One statement. The account row is taken FOR SHARE, ordered against RevokeAccountSessions
    // (FOR UPDATE): either the revocation sees this session, or the login row it DENIED fails
    // `state = 'PENDING'` on re-check. The level guard keeps the token's level the account's.
    static const std::string sql = absl::StrCat(
        "WITH a AS (SELECT account_id FROM identity.accounts WHERE account_id = $2 AND "
        "assurance_level = $8 FOR SHARE), "
        "l AS (UPDATE identity.logins SET state = 'APPROVED', completed_at = $9, session_id = $3 "
        "WHERE login_id_sha256 = $1 AND state = 'PENDING' AND account_id = $2 AND "
        "EXISTS (SELECT 1 FROM a) RETURNING login_id_sha256), "
        "s AS (INSERT INTO identity.sessions (session_id, account_id, key_id, issued_at, "
        "auth_time, expires_at, assurance_level) SELECT $3, $2, $4, $5, $6, $7, $8 FROM l), j AS (",
        kJournalInsert, "SELECT l.login_id_sha256, $9, ", JournalValues(10),
        " FROM l) SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM l)");
    std::vector<Param> params = {Param::Bytes(login_id_sha256),
                                 Param::Text(session->account_id),
                                 Param::Text(session->session_id),
                                 Param::Text(session->key_id),
                                 Param::Time(session->issued_at),
                                 Param::Time(session->auth_time),
                                 Param::Time(session->expires_at),
                                 Param::Int(static_cast<int>(session->assurance_level)),
                                 Param::Time(at)};
    AppendEvent(params, event);
    auto r = pool_->Exec(sql, params);
    if (!r.ok()) return r.status();
    auto account = r->GetInt64(0, 0);
    if (!account.ok()) return account.status();
    auto finished = r->GetInt64(0, 1);
    if (!finished.ok()) return finished.status();
    if (*finished == 1) return absl::OkStatus();
    if (*account == 0) {
      return absl::AbortedError("account: assurance level changed meanwhile; read it again");
    }
    return absl::FailedPreconditionError("login_id: login completed before");
  }

  absl::StatusOr<bool> EndSession(std::string_view session_id, absl::Time at, absl::Time keep_until,
                                  const db::AuditEvent& audit) override {
    bool ended = false;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      ended = false;
      auto r = tx.Exec(
          "UPDATE identity.sessions SET ended_at = $2, ended_by = 'logout' "
          "WHERE session_id = $1 AND ended_at IS NULL RETURNING account_id",
          {Param::Text(session_id), Param::Time(at)});
      if (!r.ok()) return r.status();
      if (r->rows() == 0) return absl::OkStatus();
      ended = true;
      if (auto a = AppendRevocation(tx, session_id, r->Get(0, 0), at, keep_until); !a.ok()) {
        return a;
      }
      return db::AppendAudit(tx, kSchema, audit, at);
    });
    if (!s.ok()) return s;
    return ended;
  }

  absl::StatusOr<int> RevokeAccountSessions(std::string_view account_id, absl::Time at,
                                            absl::Time keep_until,
                                            const db::AuditEvent& audit) override {
    int ended = 0;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      const auto id = Param::Text(account_id);
      const auto when = Param::Time(at);
      // Locked so that a login being approved right now is ordered before or after this.
      auto acc = tx.Exec("SELECT 1 FROM identity.accounts WHERE account_id = $1 FOR UPDATE", {id});
      if (!acc.ok()) return acc.status();
      if (acc->rows() == 0) return NoAccount(account_id);
      auto sessions = tx.Exec(
          "UPDATE identity.sessions SET ended_at = $2, ended_by = 'revoke-all' "
          "WHERE account_id = $1 AND ended_at IS NULL AND expires_at > $2 "
          "RETURNING session_id, expires_at",
          {id, when});
      if (!sessions.ok()) return sessions.status();
      ended = sessions->rows();
      // One exact entry per session, so that a verifier need not trust replicas' clocks ...
      for (int i = 0; i < sessions->rows(); ++i) {
        auto expires = sessions->GetTime(i, 1);
        if (!expires.ok()) return expires.status();
        if (auto a = AppendRevocation(tx, sessions->Get(i, 0), account_id, at, *expires); !a.ok()) {
          return a;
        }
      }
      // Each cancelled login's journal says how it ended, as FinishLogin's would.
      auto logins = tx.Exec(
          absl::StrCat("WITH l AS (UPDATE identity.logins SET state = 'DENIED', completed_at = $2 "
                       "WHERE account_id = $1 AND state = 'PENDING' RETURNING login_id_sha256) ",
                       kJournalInsert,
                       "SELECT l.login_id_sha256, $2, $3, 'identity.login.finish', $1, $4, "
                       "'denied', 'revoke-all' FROM l"),
          {id, when, Param::Text(audit.actor), Param::Text(audit.client_address)});
      if (!logins.ok()) return logins.status();
      // ... and one for the account, by time, for any token the rows above do not show.
      if (auto a = AppendRevocation(tx, "", account_id, at, keep_until); !a.ok()) return a;
      db::AuditEvent event = audit;
      absl::StrAppend(&event.details, event.details.empty() ? "" : " ", "sessions_ended=", ended,
                      " logins_cancelled=", logins->affected_rows());
      return db::AppendAudit(tx, kSchema, event, at);
    });
    if (!s.ok()) return s;
    return ended;
  }

  absl::StatusOr<bool> IsSessionRevoked(const SessionClaims& claims) override {
    // The session row is the truth the feed is derived from; a token without one was never
    // handed out.
    auto r = pool_->Exec(
        "SELECT ended_at IS NOT NULL FROM identity.sessions "
        "WHERE session_id = $1 AND account_id = $2",
        {Param::Text(claims.session_id), Param::Text(claims.account_id)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return true;
    return r->GetBool(0, 0);
  }

  absl::StatusOr<std::vector<SessionRevocation>> ListRevocations(uint64_t after_sequence,
                                                                 absl::Time now,
                                                                 int limit) override {
    const auto after = static_cast<int64_t>(
        std::min<uint64_t>(after_sequence, std::numeric_limits<int64_t>::max()));
    auto r = pool_->Exec(
        "SELECT sequence, coalesce(session_id, ''), account_id, revoked_at, keep_until "
        "FROM identity.session_revocations WHERE sequence > $1 AND keep_until > $2 "
        "ORDER BY sequence LIMIT $3",
        {Param::Int(after), Param::Time(now), Param::Int(limit)});
    if (!r.ok()) return r.status();
    std::vector<SessionRevocation> out;
    out.reserve(r->rows());
    for (int i = 0; i < r->rows(); ++i) {
      SessionRevocation e;
      auto seq = r->GetInt64(i, 0);
      if (!seq.ok()) return seq.status();
      e.sequence = static_cast<uint64_t>(*seq);
      e.session_id = std::string(r->Get(i, 1));
      e.account_id = std::string(r->Get(i, 2));
      auto revoked = r->GetTime(i, 3);
      if (!revoked.ok()) return revoked.status();
      e.revoked_at = *revoked;
      auto keep = r->GetTime(i, 4);
      if (!keep.ok()) return keep.status();
      e.keep_until = *keep;
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  db::Pool* pool_;  // Not owned.
};

constexpr char kV1[] = R"sql(
CREATE TABLE accounts (
  account_id        text PRIMARY KEY,
  username          text NOT NULL UNIQUE CHECK (username = lower(username)),
  given_name        text NOT NULL,
  surname           text NOT NULL,
  national_id       text NOT NULL UNIQUE CHECK (national_id ~ '^[0-9]{13}$'),
  certificate_email text NOT NULL,
  assurance_level   smallint NOT NULL CHECK (assurance_level BETWEEN 1 AND 3),
  created_at        timestamptz NOT NULL,
  proofed_at        timestamptz
);

-- Who verified whose identity against which document: one row per ProofIdentity.
CREATE TABLE proofings (
  proofing_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id      text NOT NULL REFERENCES accounts (account_id),
  operator_id     text NOT NULL,
  assurance_level smallint NOT NULL,
  document_type   text NOT NULL,
  document_number text NOT NULL,
  note            text NOT NULL,
  proofed_at      timestamptz NOT NULL
);
CREATE INDEX proofings_account ON proofings (account_id, proofed_at);

-- Only SHA-256 of each code is kept.
CREATE TABLE activation_codes (
  code_sha256       bytea PRIMARY KEY CHECK (octet_length(code_sha256) = 32),
  account_id        text NOT NULL REFERENCES accounts (account_id),
  created_at        timestamptz NOT NULL,
  expires_at        timestamptz NOT NULL,
  cancelled_at      timestamptz,
  redeemed_at       timestamptz,
  device_key_sha256 bytea
);
CREATE INDEX activation_codes_current ON activation_codes (account_id) WHERE cancelled_at IS NULL;

-- Keyed by SHA-256 of the login id. account_id is NULL for a login that can never be approved.
CREATE TABLE logins (
  login_id_sha256    bytea PRIMARY KEY CHECK (octet_length(login_id_sha256) = 32),
  account_id         text REFERENCES accounts (account_id),
  consent_request_id text,
  state              text NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'DENIED', 'EXPIRED')),
  created_at         timestamptz NOT NULL,
  expires_at         timestamptz NOT NULL,
  completed_at       timestamptz,
  session_id         text
);
CREATE INDEX logins_pending ON logins (account_id) WHERE state = 'PENDING';

CREATE TABLE sessions (
  session_id      text PRIMARY KEY,
  account_id      text NOT NULL REFERENCES accounts (account_id),
  key_id          text NOT NULL,
  issued_at       timestamptz NOT NULL,
  auth_time       timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  assurance_level smallint NOT NULL,
  ended_at        timestamptz,
  ended_by        text
);
CREATE INDEX sessions_live ON sessions (account_id) WHERE ended_at IS NULL;

-- The revocation feed (ListSessionRevocations). session_id NULL: every session of the account
-- issued at or before revoked_at.
CREATE TABLE session_revocations (
  sequence   bigint PRIMARY KEY,
  session_id text,
  account_id text NOT NULL,
  revoked_at timestamptz NOT NULL,
  keep_until timestamptz NOT NULL
);
CREATE INDEX session_revocations_keep ON session_revocations (keep_until);

-- One row: the last feed sequence. Its row lock orders feed entries by commit.
CREATE TABLE revocation_sequence (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  last bigint NOT NULL
);
INSERT INTO revocation_sequence (last) VALUES (0);
)sql";

// The logins journal: every login event (start, session issue, finish, cancelled by revoke-all),
// written in the same statement as the `logins` change it records. Append-only; the audit
// chain keeps administrative acts (docs/identity.md). The columns are an audit record's.
constexpr char kV2[] = R"sql(
CREATE TABLE login_journal (
  seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  login_id_sha256 bytea NOT NULL,
  at              timestamptz NOT NULL,
  actor           text NOT NULL,
  action          text NOT NULL,
  target          text NOT NULL,
  client_address  text NOT NULL,
  outcome         text NOT NULL,
  details         text NOT NULL
);
CREATE INDEX login_journal_login ON login_journal (login_id_sha256);
CREATE INDEX login_journal_at ON login_journal (at);
)sql";

// The national id is bound by proofing, not by registration: an unproofed registration reserves
// nothing (nobody can squat a citizen's JMBG), a proofed account holds it alone.
constexpr char kV3[] = R"sql(
ALTER TABLE accounts DROP CONSTRAINT accounts_national_id_key;
CREATE UNIQUE INDEX accounts_national_id_proofed ON accounts (national_id)
  WHERE proofed_at IS NOT NULL;
CREATE INDEX accounts_unproofed ON accounts (created_at) WHERE proofed_at IS NULL;
)sql";

// Registration by e-mail link: the pending registrations (only SHA-256 of each link's token) and
// the outbox their e-mail goes through, written in the registering transaction.
constexpr char kV4[] = R"sql(
CREATE TABLE registrations (
  token_sha256      bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
  username          text NOT NULL CHECK (username = lower(username)),
  given_name        text NOT NULL,
  surname           text NOT NULL,
  national_id       text NOT NULL CHECK (national_id ~ '^[0-9]{13}$'),
  certificate_email text NOT NULL,
  created_at        timestamptz NOT NULL,
  expires_at        timestamptz NOT NULL
);
CREATE INDEX registrations_expiry ON registrations (expires_at);

CREATE TABLE outbox (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind       text NOT NULL,
  recipient  text NOT NULL,
  subject    text NOT NULL,
  body       text NOT NULL,
  created_at timestamptz NOT NULL,
  sent_at    timestamptz,
  attempts   int NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
)sql";

// The account's audit trail (ListAccountAudit) reads the logins journal by target. (audit_log
// belongs to qsign_audit in production, deploy/postgres/roles.sql: the service cannot index it;
// roles.sql does, and migration 6 where identity owns it.)
constexpr char kV5[] = R"sql(
CREATE INDEX login_journal_target ON login_journal (target, at);
)sql";

}  // namespace

std::string_view AssuranceLevelName(AssuranceLevel level) {
  switch (level) {
    case AssuranceLevel::kUnspecified:
      return "UNSPECIFIED";
    case AssuranceLevel::kLow:
      return "LOW";
    case AssuranceLevel::kSubstantial:
      return "SUBSTANTIAL";
    case AssuranceLevel::kHigh:
      return "HIGH";
  }
  return "UNKNOWN";
}

std::string_view DocumentTypeName(DocumentType type) {
  switch (type) {
    case DocumentType::kUnspecified:
      return "UNSPECIFIED";
    case DocumentType::kNationalIdCard:
      return "NATIONAL_ID_CARD";
    case DocumentType::kPassport:
      return "PASSPORT";
  }
  return "UNKNOWN";
}

std::string_view LoginStateName(LoginState state) {
  switch (state) {
    case LoginState::kPending:
      return "PENDING";
    case LoginState::kApproved:
      return "APPROVED";
    case LoginState::kDenied:
      return "DENIED";
    case LoginState::kExpired:
      return "EXPIRED";
  }
  return "UNKNOWN";
}

absl::Status MigrateIdentitySchema(db::Pool& pool) {
  static const std::string v1 = absl::StrCat(kV1, Av(db::AuditTableSql()));
  static const std::string v2 = absl::StrCat(kV2, db::AppendOnlySql("login_journal"));
  const db::Migration migrations[] = {
      {1, "accounts, proofings, activation codes, logins, sessions, revocations, audit log", v1},
      {2, "login journal", v2},
      {3, "national id bound at proofing; unproofed accounts by age", kV3},
      {4, "registrations by e-mail link, outbox", kV4},
      {5, "audit trail of an account: the logins journal by target", kV5},
      {6, "audit log by target and actor", db::AuditIndexSql()}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

std::unique_ptr<IdentityStore> NewPostgresIdentityStore(db::Pool* pool) {
  return std::make_unique<PostgresIdentityStore>(pool);
}

}  // namespace qsign::identity
