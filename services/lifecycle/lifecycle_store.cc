#include "services/lifecycle/lifecycle_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/strings.h"
#include "services/lifecycle/schema.h"

namespace qsign::lifecycle {
namespace {

using db::Param;

constexpr char kCertColumns[] =
    "certificate_id, account_id, kind, state, ca_name, serial_hex, key_type, client_request_id, "
    "request_fingerprint, renewal_of, given_name, surname, national_id, email, "
    "legal_person_name, legal_person_pib, device_id, device_name, device_public_key, "
    "certificate_der, subject_dn, not_before, not_after, created_at, attached, revoked_at, "
    "revocation_reason, key_destroyed";

absl::StatusOr<CertKind> ParseKind(std::string_view s) {
  if (s == "QUALIFIED") return CertKind::kQualified;
  if (s == "DEVICE") return CertKind::kDevice;
  if (s == "TSA") return CertKind::kTsa;
  return absl::InternalError(absl::StrCat("lifecycle.certificates: kind ", Av(s)));
}

absl::StatusOr<CertState> ParseState(std::string_view s) {
  if (s == "PENDING") return CertState::kPending;
  if (s == "ISSUED") return CertState::kIssued;
  if (s == "REVOKED") return CertState::kRevoked;
  if (s == "ABANDONED") return CertState::kAbandoned;
  return absl::InternalError(absl::StrCat("lifecycle.certificates: state ", Av(s)));
}

absl::StatusOr<CertRecord> ReadCert(const db::Result& r, int row) {
  CertRecord c;
  int col = 0;
  c.certificate_id = std::string(r.Get(row, col++));
  c.account_id = std::string(r.Get(row, col++));
  auto kind = ParseKind(r.Get(row, col++));
  if (!kind.ok()) return kind.status();
  c.kind = *kind;
  auto state = ParseState(r.Get(row, col++));
  if (!state.ok()) return state.status();
  c.state = *state;
  c.ca_name = std::string(r.Get(row, col++));
  c.serial_hex = std::string(r.Get(row, col++));
  auto type = hsm::ParseKeyType(r.Get(row, col++));
  if (!type.ok()) return absl::InternalError(type.status().message());
  c.key_type = *type;
  c.client_request_id = std::string(r.Get(row, col++));
  c.request_fingerprint = std::string(r.Get(row, col++));
  c.renewal_of = std::string(r.Get(row, col++));
  c.subject.given_name = std::string(r.Get(row, col++));
  c.subject.surname = std::string(r.Get(row, col++));
  c.subject.national_id = std::string(r.Get(row, col++));
  c.subject.email = std::string(r.Get(row, col++));
  if (!r.IsNull(row, col)) {
    c.subject.legal_person = LegalPersonSubject{.organization_name = std::string(r.Get(row, col)),
                                                .pib = std::string(r.Get(row, col + 1))};
  }
  col += 2;
  c.device_id = std::string(r.Get(row, col++));
  c.device_name = std::string(r.Get(row, col++));
  if (!r.IsNull(row, col)) {
    auto key = r.GetBytes(row, col);
    if (!key.ok()) return key.status();
    c.device_public_key = *std::move(key);
  }
  ++col;
  if (!r.IsNull(row, col)) {
    auto der = r.GetBytes(row, col);
    if (!der.ok()) return der.status();
    c.certificate_der = *std::move(der);
  }
  ++col;
  c.subject_dn = std::string(r.Get(row, col++));
  for (absl::Time* t : {&c.not_before, &c.not_after, &c.created_at}) {
    auto v = r.GetTime(row, col++);
    if (!v.ok()) return v.status();
    *t = *v;
  }
  auto attached = r.GetBool(row, col++);
  if (!attached.ok()) return attached.status();
  c.attached = *attached;
  if (!r.IsNull(row, col)) {
    auto t = r.GetTime(row, col);
    if (!t.ok()) return t.status();
    c.revoked_at = *t;
  }
  ++col;
  auto reason = r.GetInt64(row, col++);
  if (!reason.ok()) return reason.status();
  c.revocation_reason = static_cast<int>(*reason);
  auto destroyed = r.GetBool(row, col++);
  if (!destroyed.ok()) return destroyed.status();
  c.key_destroyed = *destroyed;
  return c;
}

absl::StatusOr<std::vector<CertRecord>> ReadCerts(const db::Result& r) {
  std::vector<CertRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    auto c = ReadCert(r, i);
    if (!c.ok()) return c.status();
    out.push_back(*std::move(c));
  }
  return out;
}

absl::StatusOr<std::optional<CertRecord>> ReadOptionalCert(absl::StatusOr<db::Result> res) {
  if (!res.ok()) return res.status();
  if (res->rows() == 0) return std::nullopt;
  auto c = ReadCert(*res, 0);
  if (!c.ok()) return c.status();
  return std::optional<CertRecord>(*std::move(c));
}

constexpr char kJobColumns[] =
    "id, account_id, reason, requested_by, client_address, devices_done, sessions_done, "
    "certificates_done, keys_done, devices_deactivated, sessions_ended, certificates_revoked, "
    "attempts, last_error, created_at, finished_at";

absl::StatusOr<RevokeAllJob> ReadJob(const db::Result& r, int row) {
  RevokeAllJob j;
  int col = 0;
  auto id = r.GetInt64(row, col++);
  if (!id.ok()) return id.status();
  j.id = *id;
  j.account_id = std::string(r.Get(row, col++));
  auto reason = r.GetInt64(row, col++);
  if (!reason.ok()) return reason.status();
  j.reason = static_cast<int>(*reason);
  j.requested_by = std::string(r.Get(row, col++));
  j.client_address = std::string(r.Get(row, col++));
  for (bool* b : {&j.devices_done, &j.sessions_done, &j.certificates_done, &j.keys_done}) {
    auto v = r.GetBool(row, col++);
    if (!v.ok()) return v.status();
    *b = *v;
  }
  for (int* n : {&j.devices_deactivated, &j.sessions_ended, &j.certificates_revoked, &j.attempts}) {
    auto v = r.GetInt64(row, col++);
    if (!v.ok()) return v.status();
    *n = static_cast<int>(*v);
  }
  j.last_error = std::string(r.Get(row, col++));
  auto created = r.GetTime(row, col++);
  if (!created.ok()) return created.status();
  j.created_at = *created;
  if (!r.IsNull(row, col)) {
    auto t = r.GetTime(row, col);
    if (!t.ok()) return t.status();
    j.finished_at = *t;
  }
  return j;
}

absl::StatusOr<ContractAcceptance> ReadAcceptance(const db::Result& r, int row) {
  ContractAcceptance a;
  a.account_id = std::string(r.Get(row, 0));
  a.version = std::string(r.Get(row, 1));
  auto sha = r.GetBytes(row, 2);
  if (!sha.ok()) return sha.status();
  a.text_sha256 = *std::move(sha);
  auto at = r.GetTime(row, 3);
  if (!at.ok()) return at.status();
  a.accepted_at = *at;
  a.client_address = std::string(r.Get(row, 4));
  return a;
}

absl::StatusOr<db::Result> InsertOutbox(db::Tx& tx, const OutboxMessage& m) {
  return tx.Exec(
      "INSERT INTO lifecycle.outbox (kind, recipient, subject, body, created_at) "
      "VALUES ($1, $2, $3, $4, $5)",
      {Param::Text(m.kind), Param::Text(m.recipient), Param::Text(m.subject), Param::Text(m.body),
       Param::Time(m.created_at)});
}

constexpr char kOutboxColumns[] =
    "id, kind, recipient, subject, body, created_at, attempts, last_error";

absl::StatusOr<OutboxMessage> ReadOutbox(const db::Result& r, int row) {
  OutboxMessage m;
  auto id = r.GetInt64(row, 0);
  if (!id.ok()) return id.status();
  m.id = *id;
  m.kind = std::string(r.Get(row, 1));
  m.recipient = std::string(r.Get(row, 2));
  m.subject = std::string(r.Get(row, 3));
  m.body = std::string(r.Get(row, 4));
  auto at = r.GetTime(row, 5);
  if (!at.ok()) return at.status();
  m.created_at = *at;
  auto attempts = r.GetInt64(row, 6);
  if (!attempts.ok()) return attempts.status();
  m.attempts = static_cast<int>(*attempts);
  if (!r.IsNull(row, 7)) m.last_error = std::string(r.Get(row, 7));
  return m;
}

std::vector<Param> CertParams(const CertRecord& c) {
  const bool lp = c.subject.legal_person.has_value();
  return {Param::Text(c.certificate_id),
          Param::Text(c.account_id),
          Param::Text(CertKindName(c.kind)),
          Param::Text(CertStateName(c.state)),
          Param::Text(c.ca_name),
          Param::Text(c.serial_hex),
          Param::Text(hsm::KeyTypeName(c.key_type)),
          Param::Text(c.client_request_id),
          Param::Text(c.request_fingerprint),
          c.renewal_of.empty() ? Param::Null() : Param::Text(c.renewal_of),
          Param::Text(c.subject.given_name),
          Param::Text(c.subject.surname),
          Param::Text(c.subject.national_id),
          Param::Text(c.subject.email),
          lp ? Param::Text(c.subject.legal_person->organization_name) : Param::Null(),
          lp ? Param::Text(c.subject.legal_person->pib) : Param::Null(),
          Param::Text(c.device_id),
          Param::Text(c.device_name),
          c.device_public_key.empty() ? Param::Null() : Param::Bytes(c.device_public_key),
          c.certificate_der.empty() ? Param::Null() : Param::Bytes(c.certificate_der),
          Param::Text(c.subject_dn),
          Param::Time(c.not_before),
          Param::Time(c.not_after),
          Param::Time(c.created_at)};
}

constexpr char kInsertCert[] =
    "INSERT INTO lifecycle.certificates (certificate_id, account_id, kind, state, ca_name, "
    "serial_hex, key_type, client_request_id, request_fingerprint, renewal_of, given_name, "
    "surname, national_id, email, legal_person_name, legal_person_pib, device_id, device_name, "
    "device_public_key, certificate_der, subject_dn, not_before, not_after, created_at, "
    "issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
    "$17, $18, $19, $20, $21, $22, $23, $24, CASE WHEN $4 = 'ISSUED' THEN $24::timestamptz END)";

// Serializes an account's issuance decisions and the start of its revoke-all across replicas.
constexpr char kLockAccount[] =
    "SELECT pg_advisory_xact_lock(hashtext('lifecycle.account:' || $1))";

// A revoke-all of account $1 that is unfinished, or finished at or after $2 (a login time): the
// job's id, if any.
constexpr char kRevokeAllSince[] =
    "SELECT id FROM lifecycle.revoke_all_jobs WHERE account_id = $1 AND "
    "(finished_at IS NULL OR finished_at >= $2) ORDER BY id DESC LIMIT 1";

class PostgresLifecycleStore final : public LifecycleStore {
 public:
  explicit PostgresLifecycleStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<ContractAcceptance> RecordAcceptance(const ContractAcceptance& a,
                                                      const OutboxMessage& mail,
                                                      const db::AuditEvent& audit) override {
    ContractAcceptance out;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto ins = tx.Exec(
          "INSERT INTO lifecycle.contract_acceptances (account_id, version, text_sha256, "
          "accepted_at, client_address) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (account_id, version) DO NOTHING RETURNING 1",
          {Param::Text(a.account_id), Param::Text(a.version), Param::Bytes(a.text_sha256),
           Param::Time(a.accepted_at), Param::Text(a.client_address)});
      if (!ins.ok()) return ins.status();
      if (ins->rows() == 1) {
        if (auto m = InsertOutbox(tx, mail); !m.ok()) return m.status();
        if (auto au = db::AppendAudit(tx, kSchema, audit, a.accepted_at); !au.ok()) return au;
      }
      auto res = tx.Exec(
          "SELECT account_id, version, text_sha256, accepted_at, client_address "
          "FROM lifecycle.contract_acceptances WHERE account_id = $1 AND version = $2",
          {Param::Text(a.account_id), Param::Text(a.version)});
      if (!res.ok()) return res.status();
      auto read = ReadAcceptance(*res, 0);
      if (!read.ok()) return read.status();
      out = *std::move(read);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::optional<ContractAcceptance>> FindAcceptance(
      std::string_view account_id, std::string_view version) override {
    return OneAcceptance(
        "SELECT account_id, version, text_sha256, accepted_at, client_address "
        "FROM lifecycle.contract_acceptances WHERE account_id = $1 AND version = $2",
        {Param::Text(account_id), Param::Text(version)});
  }

  absl::StatusOr<std::optional<ContractAcceptance>> LatestAcceptance(
      std::string_view account_id) override {
    return OneAcceptance(
        "SELECT account_id, version, text_sha256, accepted_at, client_address "
        "FROM lifecycle.contract_acceptances WHERE account_id = $1 "
        "ORDER BY accepted_at DESC, version DESC LIMIT 1",
        {Param::Text(account_id)});
  }

  absl::Status InsertApproval(const LegalPersonApproval& a, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "INSERT INTO lifecycle.legal_person_approvals (approval_id, account_id, "
          "organization_name, pib, approved_by, note, approved_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {Param::Text(a.approval_id), Param::Text(a.account_id),
           Param::Text(a.legal_person.organization_name), Param::Text(a.legal_person.pib),
           Param::Text(a.approved_by), Param::Text(a.note), Param::Time(a.approved_at)});
      if (!res.ok()) return res.status();
      return db::AppendAudit(tx, kSchema, audit, a.approved_at);
    });
  }

  absl::StatusOr<std::optional<LegalPersonApproval>> FindApproval(std::string_view account_id,
                                                                  std::string_view pib) override {
    auto res = pool_->Exec(
        "SELECT approval_id, account_id, organization_name, pib, approved_by, note, approved_at "
        "FROM lifecycle.legal_person_approvals WHERE account_id = $1 AND pib = $2 "
        "ORDER BY approved_at DESC LIMIT 1",
        {Param::Text(account_id), Param::Text(pib)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::nullopt;
    LegalPersonApproval a;
    a.approval_id = std::string(res->Get(0, 0));
    a.account_id = std::string(res->Get(0, 1));
    a.legal_person.organization_name = std::string(res->Get(0, 2));
    a.legal_person.pib = std::string(res->Get(0, 3));
    a.approved_by = std::string(res->Get(0, 4));
    a.note = std::string(res->Get(0, 5));
    auto at = res->GetTime(0, 6);
    if (!at.ok()) return at.status();
    a.approved_at = *at;
    return a;
  }

  absl::StatusOr<CertRecord> GetCertificate(std::string_view certificate_id) override {
    auto c = ReadOptionalCert(
        pool_->Exec(absl::StrCat("SELECT ", kCertColumns,
                                 " FROM lifecycle.certificates WHERE certificate_id = $1"),
                    {Param::Text(certificate_id)}));
    if (!c.ok()) return c.status();
    if (!c->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("certificate_id: no certificate ", Echo(certificate_id)));
    }
    return **std::move(c);
  }

  absl::StatusOr<CertRecord> GetBySerial(std::string_view serial_hex) override {
    auto c = ReadOptionalCert(pool_->Exec(
        absl::StrCat("SELECT ", kCertColumns, " FROM lifecycle.certificates WHERE serial_hex = $1"),
        {Param::Text(serial_hex)}));
    if (!c.ok()) return c.status();
    if (!c->has_value()) {
      return absl::NotFoundError(absl::StrCat("serial_hex: no certificate ", Echo(serial_hex)));
    }
    return **std::move(c);
  }

  absl::StatusOr<std::vector<CertRecord>> ListCertificates(std::string_view account_id) override {
    auto res = pool_->Exec(absl::StrCat("SELECT ", kCertColumns,
                                        " FROM lifecycle.certificates WHERE account_id = $1 "
                                        "ORDER BY created_at DESC, seq DESC"),
                           {Param::Text(account_id)});
    if (!res.ok()) return res.status();
    return ReadCerts(*res);
  }

  absl::StatusOr<db::AuditPage> ListAccountAudit(std::string_view account_id, int page_size,
                                                 std::string_view page_token) override {
    auto serials = pool_->Exec(
        "SELECT serial_hex FROM lifecycle.certificates WHERE account_id = $1 ORDER BY seq",
        {Param::Text(account_id)});
    if (!serials.ok()) return serials.status();
    std::vector<std::string> targets = {std::string(account_id)};
    for (int r = 0; r < serials->rows(); ++r) targets.emplace_back(serials->Get(r, 0));
    return db::ListAuditRecords(*pool_, {.tables = {{"lifecycle.audit_log"}},
                                         .targets = std::move(targets),
                                         .actors = {absl::StrCat("account:", Av(account_id))},
                                         .page_size = page_size,
                                         .page_token = page_token});
  }

  absl::StatusOr<std::optional<CertRecord>> FindRenewalOf(
      std::string_view certificate_id) override {
    return ReadOptionalCert(
        pool_->Exec(absl::StrCat("SELECT ", kCertColumns,
                                 " FROM lifecycle.certificates WHERE renewal_of = $1 "
                                 "AND state <> 'ABANDONED'"),
                    {Param::Text(certificate_id)}));
  }

  absl::StatusOr<IntentResult> CreateIntent(const CertRecord& intent, const IntentChecks& checks,
                                            const db::AuditEvent& audit) override {
    IntentResult out;
    std::string in_progress;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      out = IntentResult{};
      in_progress.clear();
      // Serializes issuance decisions per account across replicas.
      if (auto lock = tx.Exec(kLockAccount, {Param::Text(intent.account_id)}); !lock.ok()) {
        return lock.status();
      }
      auto same = ReadOptionalCert(
          tx.Exec(absl::StrCat("SELECT ", kCertColumns,
                               " FROM lifecycle.certificates WHERE account_id = $1 "
                               "AND client_request_id = $2"),
                  {Param::Text(intent.account_id), Param::Text(intent.client_request_id)}));
      if (!same.ok()) return same.status();
      if (same->has_value()) {
        out.record = **same;
        out.existed = true;
        return absl::OkStatus();
      }
      if (checks.no_active_qualified) {
        auto active = ReadOptionalCert(
            tx.Exec(absl::StrCat("SELECT ", kCertColumns,
                                 " FROM lifecycle.certificates WHERE account_id = $1 AND kind = "
                                 "'QUALIFIED' AND state = 'ISSUED' AND not_after > $2 "
                                 "ORDER BY not_after DESC LIMIT 1"),
                    {Param::Text(intent.account_id), Param::Time(checks.now)}));
        if (!active.ok()) return active.status();
        if (active->has_value()) {
          return absl::AlreadyExistsError(absl::StrCat(
              "the account has an active qualified certificate (serial ", (*active)->serial_hex,
              ", valid until ",
              absl::FormatTime(absl::RFC3339_sec, (*active)->not_after, absl::UTCTimeZone()),
              "): use Renew in its last 30 days"));
        }
      }
      // Another issuance of this account in flight, or left behind by a crash.
      auto pending = tx.Exec(absl::StrCat("SELECT ", kCertColumns,
                                          " FROM lifecycle.certificates WHERE account_id = $1 "
                                          "AND state = 'PENDING' FOR UPDATE"),
                             {Param::Text(intent.account_id)});
      if (!pending.ok()) return pending.status();
      auto pendings = ReadCerts(*pending);
      if (!pendings.ok()) return pendings.status();
      for (CertRecord& p : *pendings) {
        if (checks.now - p.created_at < checks.stale_after) {
          // Not ABORTED here: InTransaction would retry it.
          in_progress = absl::StrCat(
              "another issuance for this account is in progress (client_request_id ",
              p.client_request_id, "): retry that request, or this one in a few minutes");
          return absl::CancelledError(in_progress);
        }
        auto up = tx.Exec(
            "UPDATE lifecycle.certificates SET state = 'ABANDONED', abandoned_at = $2 "
            "WHERE certificate_id = $1",
            {Param::Text(p.certificate_id), Param::Time(checks.now)});
        if (!up.ok()) return up.status();
        if (auto a = db::AppendAudit(tx, kSchema,
                                     {.actor = "lifecycle",
                                      .action = "certificate.abandon",
                                      .target = p.serial_hex,
                                      .outcome = "ok",
                                      .details = "stale issuance intent superseded"},
                                     checks.now);
            !a.ok()) {
          return a;
        }
        p.state = CertState::kAbandoned;
        out.abandoned.push_back(std::move(p));
      }
      // After the stale intents are abandoned: a crashed renewal does not block the next one.
      if (!intent.renewal_of.empty()) {
        auto successor = ReadOptionalCert(
            tx.Exec(absl::StrCat("SELECT ", kCertColumns,
                                 " FROM lifecycle.certificates WHERE renewal_of = $1 "
                                 "AND state <> 'ABANDONED'"),
                    {Param::Text(intent.renewal_of)}));
        if (!successor.ok()) return successor.status();
        if (successor->has_value()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "certificate ", intent.renewal_of, " was already renewed by ",
              (*successor)->certificate_id, " (serial ", (*successor)->serial_hex, ")"));
        }
      }
      if (checks.authorized_at.has_value()) {
        auto job = tx.Exec(kRevokeAllSince, {Param::Text(intent.account_id),
                                             Param::Time(*checks.authorized_at)});
        if (!job.ok()) return job.status();
        if (job->rows() > 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("account: revoke-all job ", Av(job->Get(0, 0)),
                           " ran after this login or is still running; log in again"));
        }
      }
      std::vector<Param> params = CertParams(intent);
      auto ins = tx.Exec(kInsertCert, params);
      if (!ins.ok()) return ins.status();
      if (checks.authorized_at.has_value()) {
        auto at = tx.Exec(
            "UPDATE lifecycle.certificates SET authorized_at = $2 WHERE certificate_id = $1",
            {Param::Text(intent.certificate_id), Param::Time(*checks.authorized_at)});
        if (!at.ok()) return at.status();
      }
      out.record = intent;
      return db::AppendAudit(tx, kSchema, audit, intent.created_at);
    });
    if (!in_progress.empty()) return absl::AbortedError(in_progress);
    if (!s.ok()) return s;
    return out;
  }

  absl::Status MarkIssued(std::string_view certificate_id, std::string_view der,
                          std::string_view subject_dn, absl::Time at,
                          const db::AuditEvent& audit) override {
    std::string revoked_by_job;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      revoked_by_job.clear();
      auto row = tx.Exec(
          "SELECT account_id, authorized_at, serial_hex FROM lifecycle.certificates "
          "WHERE certificate_id = $1",
          {Param::Text(certificate_id)});
      if (!row.ok()) return row.status();
      if (row->rows() == 1) {
        const std::string account(row->Get(0, 0));
        // Under the account's lock, which a revoke-all takes to start: a job that started before
        // this is seen here, and one that starts after sees this certificate ISSUED.
        if (auto lock = tx.Exec(kLockAccount, {Param::Text(account)}); !lock.ok()) {
          return lock.status();
        }
        if (!row->IsNull(0, 1)) {
          auto authorized = row->GetTime(0, 1);
          if (!authorized.ok()) return authorized.status();
          auto job = tx.Exec(kRevokeAllSince, {Param::Text(account), Param::Time(*authorized)});
          if (!job.ok()) return job.status();
          if (job->rows() > 0) {
            revoked_by_job = std::string(job->Get(0, 0));
            auto up = tx.Exec(
                "UPDATE lifecycle.certificates SET state = 'ABANDONED', abandoned_at = $2 "
                "WHERE certificate_id = $1 AND state = 'PENDING'",
                {Param::Text(certificate_id), Param::Time(at)});
            if (!up.ok()) return up.status();
            if (up->affected_rows() == 0) return absl::OkStatus();
            return db::AppendAudit(
                tx, kSchema,
                {.actor = "lifecycle",
                 .action = "certificate.abandon",
                 .target = std::string(row->Get(0, 2)),
                 .outcome = "ok",
                 .details = absl::StrCat("certificate_id=", Av(certificate_id), " revoke_all job=",
                                         revoked_by_job, " since the request's login")},
                at);
          }
        }
      }
      auto res = tx.Exec(
          "UPDATE lifecycle.certificates SET state = 'ISSUED', certificate_der = $2, "
          "subject_dn = $3, issued_at = $4 WHERE certificate_id = $1 AND state = 'PENDING'",
          {Param::Text(certificate_id), Param::Bytes(der), Param::Text(subject_dn),
           Param::Time(at)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("certificate ", Echo(certificate_id), " is no longer pending"));
      }
      return db::AppendAudit(tx, kSchema, audit, at);
    });
    if (!s.ok()) return s;
    if (!revoked_by_job.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("account: revoke-all job ", revoked_by_job,
                       " ran after this login; the issuance is abandoned, log in again"));
    }
    return absl::OkStatus();
  }

  absl::Status MarkAttached(std::string_view certificate_id) override {
    auto res =
        pool_->Exec("UPDATE lifecycle.certificates SET attached = true WHERE certificate_id = $1",
                    {Param::Text(certificate_id)});
    return res.status();
  }

  absl::StatusOr<CertRecord> MarkRevoked(std::string_view certificate_id, int reason, absl::Time at,
                                         const db::AuditEvent& audit) override {
    CertRecord out;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = ReadOptionalCert(tx.Exec(
          absl::StrCat("UPDATE lifecycle.certificates SET state = 'REVOKED', revoked_at = $2, "
                       "revocation_reason = $3 WHERE certificate_id = $1 AND state = 'ISSUED' "
                       "RETURNING ",
                       kCertColumns),
          {Param::Text(certificate_id), Param::Time(at), Param::Int(reason)}));
      if (!res.ok()) return res.status();
      if (!res->has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("certificate ", Echo(certificate_id), " is not issued"));
      }
      out = **std::move(res);
      if (auto done = tx.Exec(
              "UPDATE lifecycle.revocation_requests SET finished_at = $2 "
              "WHERE certificate_id = $1 AND finished_at IS NULL",
              {Param::Text(certificate_id), Param::Time(at)});
          !done.ok()) {
        return done.status();
      }
      return db::AppendAudit(tx, kSchema, audit, at);
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status MarkKeyDestroyed(std::string_view certificate_id,
                                const std::optional<db::AuditEvent>& audit,
                                absl::Time at) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE lifecycle.certificates SET key_destroyed = true "
          "WHERE certificate_id = $1 AND key_destroyed = false",
          {Param::Text(certificate_id)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() == 0 || !audit.has_value()) return absl::OkStatus();
      return db::AppendAudit(tx, kSchema, *audit, at);
    });
  }

  absl::StatusOr<std::vector<CertRecord>> ListKeysToDestroy(absl::Time now, int limit) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kCertColumns,
                     " FROM lifecycle.certificates WHERE kind = 'QUALIFIED' AND "
                     "key_destroyed = false AND (state IN ('REVOKED', 'ABANDONED') OR "
                     "(state = 'ISSUED' AND not_after < $1)) ORDER BY not_after, seq LIMIT $2"),
        {Param::Time(now), Param::Int(limit)});
    if (!res.ok()) return res.status();
    return ReadCerts(*res);
  }

  absl::Status MarkAbandoned(std::string_view certificate_id, absl::Time at,
                             const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE lifecycle.certificates SET state = 'ABANDONED', abandoned_at = $2 "
          "WHERE certificate_id = $1 AND state = 'PENDING'",
          {Param::Text(certificate_id), Param::Time(at)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() == 0) return absl::OkStatus();
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

  absl::StatusOr<std::vector<CertRecord>> InsertDeviceCertificate(
      const CertRecord& cert, const db::AuditEvent& audit) override {
    std::vector<CertRecord> superseded;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      superseded.clear();
      auto old = tx.Exec(
          absl::StrCat("UPDATE lifecycle.certificates SET state = 'REVOKED', revoked_at = $2, "
                       "revocation_reason = 4 WHERE account_id = $1 AND kind = 'DEVICE' "
                       "AND state = 'ISSUED' RETURNING ",
                       kCertColumns),
          {Param::Text(cert.account_id), Param::Time(cert.created_at)});
      if (!old.ok()) return old.status();
      auto olds = ReadCerts(*old);
      if (!olds.ok()) return olds.status();
      superseded = *std::move(olds);
      std::vector<Param> params = CertParams(cert);
      auto ins = tx.Exec(kInsertCert, params);
      if (!ins.ok()) return ins.status();
      return db::AppendAudit(tx, kSchema, audit, cert.created_at);
    });
    if (!s.ok()) return s;
    return superseded;
  }

  absl::StatusOr<std::optional<CertRecord>> FindDeviceCertificate(
      std::string_view account_id, std::string_view device_id,
      std::string_view device_public_key) override {
    return ReadOptionalCert(pool_->Exec(
        absl::StrCat("SELECT ", kCertColumns,
                     " FROM lifecycle.certificates WHERE account_id = $1 AND kind = 'DEVICE' "
                     "AND device_id = $2 AND device_public_key = $3 "
                     "ORDER BY created_at DESC LIMIT 1"),
        {Param::Text(account_id), Param::Text(device_id), Param::Bytes(device_public_key)}));
  }

  absl::Status InsertServiceCertificate(const CertRecord& cert,
                                        const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto ins = tx.Exec(kInsertCert, CertParams(cert));
      if (!ins.ok()) return ins.status();
      return db::AppendAudit(tx, kSchema, audit, cert.created_at);
    });
  }

  absl::StatusOr<std::optional<CertRecord>> FindServiceCertificate(
      CertKind kind, std::string_view public_key) override {
    return ReadOptionalCert(pool_->Exec(
        absl::StrCat("SELECT ", kCertColumns,
                     " FROM lifecycle.certificates WHERE kind = $1 AND device_public_key = $2 "
                     "AND state = 'ISSUED' ORDER BY created_at DESC LIMIT 1"),
        {Param::Text(CertKindName(kind)), Param::Bytes(public_key)}));
  }

  absl::Status RequestRevocation(const RevocationRequest& r, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto issued = tx.Exec(
          "SELECT 1 FROM lifecycle.certificates WHERE certificate_id = $1 AND state = 'ISSUED' "
          "FOR UPDATE",
          {Param::Text(r.certificate_id)});
      if (!issued.ok()) return issued.status();
      if (issued->rows() == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("certificate ", Echo(r.certificate_id), " is not issued"));
      }
      auto res = tx.Exec(
          "INSERT INTO lifecycle.revocation_requests (certificate_id, reason, requested_by, "
          "client_address, requested_at) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (certificate_id) DO UPDATE SET reason = EXCLUDED.reason, "
          "requested_by = EXCLUDED.requested_by, client_address = EXCLUDED.client_address "
          "WHERE lifecycle.revocation_requests.finished_at IS NULL",
          {Param::Text(r.certificate_id), Param::Int(r.reason), Param::Text(r.requested_by),
           Param::Text(r.client_address), Param::Time(r.requested_at)});
      if (!res.ok()) return res.status();
      return db::AppendAudit(tx, kSchema, audit, r.requested_at);
    });
  }

  absl::StatusOr<std::vector<RevocationRequest>> ListUnfinishedRevocations(
      absl::Time requested_before, int limit) override {
    auto res = pool_->Exec(
        "SELECT certificate_id, reason, requested_by, client_address, requested_at "
        "FROM lifecycle.revocation_requests WHERE finished_at IS NULL AND requested_at < $2 "
        "ORDER BY requested_at, certificate_id LIMIT $1",
        {Param::Int(limit), Param::Time(requested_before)});
    if (!res.ok()) return res.status();
    std::vector<RevocationRequest> out;
    for (int i = 0; i < res->rows(); ++i) {
      RevocationRequest r{.certificate_id = std::string(res->Get(i, 0)),
                          .requested_by = std::string(res->Get(i, 2)),
                          .client_address = std::string(res->Get(i, 3))};
      auto reason = res->GetInt64(i, 1);
      if (!reason.ok()) return reason.status();
      r.reason = static_cast<int>(*reason);
      auto at = res->GetTime(i, 4);
      if (!at.ok()) return at.status();
      r.requested_at = *at;
      out.push_back(std::move(r));
    }
    return out;
  }

  absl::Status FinishRevocationRequest(std::string_view certificate_id, absl::Time at) override {
    return pool_
        ->Exec(
            "UPDATE lifecycle.revocation_requests SET finished_at = $2 "
            "WHERE certificate_id = $1 AND finished_at IS NULL",
            {Param::Text(certificate_id), Param::Time(at)})
        .status();
  }

  absl::Status RecordRevocationFailure(std::string_view certificate_id,
                                       std::string_view error) override {
    return pool_
        ->Exec(
            "UPDATE lifecycle.revocation_requests SET attempts = attempts + 1, last_error = $2 "
            "WHERE certificate_id = $1 AND finished_at IS NULL",
            {Param::Text(certificate_id), Param::Text(error.substr(0, 1000))})
        .status();
  }

  absl::StatusOr<std::pair<RevokeAllJob, bool>> StartRevokeAllJob(
      const RevokeAllJob& job, const db::AuditEvent& audit) override {
    std::pair<RevokeAllJob, bool> out;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      // The lock MarkIssued takes: an issuance stored before this job is listed by it, one
      // stored after it sees the job (and is abandoned).
      if (auto lock = tx.Exec(kLockAccount, {Param::Text(job.account_id)}); !lock.ok()) {
        return lock.status();
      }
      // One unfinished job per account: a second request resumes it.
      auto res = tx.Exec(
          "INSERT INTO lifecycle.revoke_all_jobs (account_id, reason, requested_by, "
          "client_address, state, created_at, updated_at) VALUES ($1, $2, $3, $4, 'RUNNING', $5, "
          "$5) ON CONFLICT (account_id) WHERE state = 'RUNNING' DO NOTHING RETURNING id",
          {Param::Text(job.account_id), Param::Int(job.reason), Param::Text(job.requested_by),
           Param::Text(job.client_address), Param::Time(job.created_at)});
      if (!res.ok()) return res.status();
      out.second = res->rows() == 1;
      auto existing =
          tx.Exec(absl::StrCat("SELECT ", kJobColumns,
                               " FROM lifecycle.revoke_all_jobs WHERE account_id = $1 AND "
                               "state = 'RUNNING'"),
                  {Param::Text(job.account_id)});
      if (!existing.ok()) return existing.status();
      if (existing->rows() != 1) {
        return absl::AbortedError("revoke-all: another request finished the job meanwhile");
      }
      auto read = ReadJob(*existing, 0);
      if (!read.ok()) return read.status();
      out.first = *std::move(read);
      if (!out.second) return absl::OkStatus();
      return db::AppendAudit(tx, kSchema, audit, job.created_at);
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status RecordRevokeAllStep(int64_t id, RevokeAllStep step, int count,
                                   absl::Time at) override {
    const char* set = "keys_done = true";
    switch (step) {
      case RevokeAllStep::kDevices:
        set = "devices_done = true, devices_deactivated = devices_deactivated + $3";
        break;
      case RevokeAllStep::kSessions:
        set = "sessions_done = true, sessions_ended = sessions_ended + $3";
        break;
      case RevokeAllStep::kCertificates:
        set = "certificates_done = true, certificates_revoked = certificates_revoked + $3";
        break;
      case RevokeAllStep::kKeys:
        return pool_
            ->Exec(absl::StrCat("UPDATE lifecycle.revoke_all_jobs SET ", set,
                                ", updated_at = $2 WHERE id = $1"),
                   {Param::Int(id), Param::Time(at)})
            .status();
    }
    return pool_
        ->Exec(absl::StrCat("UPDATE lifecycle.revoke_all_jobs SET ", set,
                            ", updated_at = $2 WHERE id = $1"),
               {Param::Int(id), Param::Time(at), Param::Int(count)})
        .status();
  }

  absl::Status RecordRevokeAllFailure(int64_t id, std::string_view error, absl::Time at) override {
    return pool_
        ->Exec(
            "UPDATE lifecycle.revoke_all_jobs SET attempts = attempts + 1, last_error = $2, "
            "updated_at = $3 WHERE id = $1",
            {Param::Int(id), Param::Text(error.substr(0, 1000)), Param::Time(at)})
        .status();
  }

  absl::Status FinishRevokeAllJob(int64_t id, absl::Time at, const db::AuditEvent& audit) override {
    return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE lifecycle.revoke_all_jobs SET state = 'DONE', finished_at = $2, updated_at = $2 "
          "WHERE id = $1 AND state = 'RUNNING'",
          {Param::Int(id), Param::Time(at)});
      if (!res.ok()) return res.status();
      if (res->affected_rows() == 0) return absl::OkStatus();  // Another run finished it.
      return db::AppendAudit(tx, kSchema, audit, at);
    });
  }

  absl::StatusOr<RevokeAllJob> GetRevokeAllJob(int64_t id) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kJobColumns, " FROM lifecycle.revoke_all_jobs WHERE id = $1"),
        {Param::Int(id)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return absl::NotFoundError(absl::StrCat("revoke-all job ", id));
    return ReadJob(*res, 0);
  }

  absl::StatusOr<std::vector<RevokeAllJob>> ListUnfinishedRevokeAllJobs(int limit) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kJobColumns,
                     " FROM lifecycle.revoke_all_jobs WHERE state = 'RUNNING' ORDER BY id "
                     "LIMIT $1"),
        {Param::Int(limit)});
    if (!res.ok()) return res.status();
    std::vector<RevokeAllJob> out;
    for (int i = 0; i < res->rows(); ++i) {
      auto job = ReadJob(*res, i);
      if (!job.ok()) return job.status();
      out.push_back(*std::move(job));
    }
    return out;
  }

  absl::StatusOr<std::optional<IssuedStatus>> FindIssued(std::string_view ca_name,
                                                         std::string_view serial_hex) override {
    auto res = pool_->Exec(
        "SELECT state, revoked_at, revocation_reason FROM lifecycle.certificates "
        "WHERE ca_name = $1 AND serial_hex = $2 AND state IN ('ISSUED', 'REVOKED')",
        {Param::Text(ca_name), Param::Text(serial_hex)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::nullopt;
    IssuedStatus out;
    auto state = ParseState(res->Get(0, 0));
    if (!state.ok()) return state.status();
    out.state = *state;
    if (!res->IsNull(0, 1)) {
      auto at = res->GetTime(0, 1);
      if (!at.ok()) return at.status();
      out.revoked_at = *at;
    }
    auto reason = res->GetInt64(0, 2);
    if (!reason.ok()) return reason.status();
    out.revocation_reason = static_cast<int>(*reason);
    return std::optional<IssuedStatus>(out);
  }

  absl::StatusOr<CrlSnapshot> NextCrl(std::string_view ca_name) override {
    CrlSnapshot out;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      out = CrlSnapshot{};
      // The row lock orders CRL numbers; what is read after it includes every revocation
      // committed before the number was taken.
      auto num = tx.Exec(
          "UPDATE lifecycle.cas SET next_crl_number = next_crl_number + 1 WHERE name = $1 "
          "RETURNING next_crl_number - 1",
          {Param::Text(ca_name)});
      if (!num.ok()) return num.status();
      if (num->rows() != 1) return absl::NotFoundError(absl::StrCat("no CA ", Av(ca_name)));
      auto n = num->GetInt64(0, 0);
      if (!n.ok()) return n.status();
      out.crl_number = *n;
      auto res = tx.Exec(
          "SELECT serial_hex, revoked_at, revocation_reason "
          "FROM lifecycle.certificates WHERE ca_name = $1 AND state = 'REVOKED' "
          "ORDER BY serial_hex",
          {Param::Text(ca_name)});
      if (!res.ok()) return res.status();
      for (int i = 0; i < res->rows(); ++i) {
        RevokedEntry e;
        auto at = res->GetTime(i, 1);
        if (!at.ok()) return at.status();
        e.revoked_at = *at;
        auto reason = res->GetInt64(i, 2);
        if (!reason.ok()) return reason.status();
        e.reason = static_cast<int>(*reason);
        std::string hex(res->Get(i, 0));
        if (hex.size() % 2) hex.insert(hex.begin(), '0');
        e.serial = HexToBytes(hex);
        out.revoked.push_back(std::move(e));
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status SaveCrl(std::string_view ca_name, int64_t crl_number, absl::Time this_update,
                       absl::Time next_update, std::string_view der) override {
    return pool_
        ->Exec(
            "INSERT INTO lifecycle.crls (ca_name, crl_number, this_update, next_update, der) "
            "VALUES ($1, $2, $3, $4, $5)",
            {Param::Text(ca_name), Param::Int(crl_number), Param::Time(this_update),
             Param::Time(next_update), Param::Bytes(der)})
        .status();
  }

  absl::StatusOr<std::optional<StoredCrl>> LatestCrl(std::string_view ca_name) override {
    auto res = pool_->Exec(
        "SELECT crl_number, this_update, next_update, der FROM lifecycle.crls "
        "WHERE ca_name = $1 ORDER BY crl_number DESC LIMIT 1",
        {Param::Text(ca_name)});
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::nullopt;
    StoredCrl crl;
    auto n = res->GetInt64(0, 0);
    if (!n.ok()) return n.status();
    crl.crl_number = *n;
    auto t1 = res->GetTime(0, 1);
    if (!t1.ok()) return t1.status();
    crl.this_update = *t1;
    auto t2 = res->GetTime(0, 2);
    if (!t2.ok()) return t2.status();
    crl.next_update = *t2;
    auto der = res->GetBytes(0, 3);
    if (!der.ok()) return der.status();
    crl.der = *std::move(der);
    return crl;
  }

  absl::StatusOr<std::vector<CertRecord>> ListRenewalDue(absl::Time now,
                                                         absl::Duration window) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kCertColumns,
                     " FROM lifecycle.certificates WHERE kind = 'QUALIFIED' AND state = 'ISSUED' "
                     "AND reminder_queued_at IS NULL AND not_after > $1 AND not_after <= $2 "
                     "ORDER BY not_after"),
        {Param::Time(now), Param::Time(now + window)});
    if (!res.ok()) return res.status();
    return ReadCerts(*res);
  }

  absl::StatusOr<bool> QueueReminder(std::string_view certificate_id,
                                     const OutboxMessage& mail) override {
    bool queued = false;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      auto res = tx.Exec(
          "UPDATE lifecycle.certificates SET reminder_queued_at = $2 "
          "WHERE certificate_id = $1 AND reminder_queued_at IS NULL",
          {Param::Text(certificate_id), Param::Time(mail.created_at)});
      if (!res.ok()) return res.status();
      queued = res->affected_rows() == 1;
      if (!queued) return absl::OkStatus();
      return InsertOutbox(tx, mail).status();
    });
    if (!s.ok()) return s;
    return queued;
  }

  absl::StatusOr<std::vector<OutboxMessage>> PendingOutbox(int limit) override {
    auto res = pool_->Exec(
        absl::StrCat("SELECT ", kOutboxColumns,
                     " FROM lifecycle.outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1"),
        {Param::Int(limit)});
    if (!res.ok()) return res.status();
    std::vector<OutboxMessage> out;
    for (int i = 0; i < res->rows(); ++i) {
      auto m = ReadOutbox(*res, i);
      if (!m.ok()) return m.status();
      out.push_back(*std::move(m));
    }
    return out;
  }

  absl::Status MarkSent(int64_t id, absl::Time at) override {
    return pool_
        ->Exec("UPDATE lifecycle.outbox SET sent_at = $2 WHERE id = $1",
               {Param::Int(id), Param::Time(at)})
        .status();
  }

  absl::StatusOr<std::optional<OutboxAttempt>> DeliverNextOutbox(
      int64_t after_id, absl::Time now,
      const std::function<absl::Status(const OutboxMessage&)>& send) override {
    std::optional<OutboxAttempt> attempt;
    auto s = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
      attempt.reset();
      auto res = tx.Exec(
          absl::StrCat("SELECT ", kOutboxColumns,
                       " FROM lifecycle.outbox WHERE sent_at IS NULL AND id > $1 ORDER BY id "
                       "LIMIT 1 FOR UPDATE SKIP LOCKED"),
          {Param::Int(after_id)});
      if (!res.ok()) return res.status();
      if (res->rows() == 0) return absl::OkStatus();
      auto m = ReadOutbox(*res, 0);
      if (!m.ok()) return m.status();
      absl::Status sent = send(*m);
      attempt = OutboxAttempt{.id = m->id, .result = sent};
      if (sent.ok()) {
        return tx
            .Exec(
                "UPDATE lifecycle.outbox SET sent_at = $2, attempts = attempts + 1, "
                "last_attempt_at = $2 WHERE id = $1",
                {Param::Int(m->id), Param::Time(now)})
            .status();
      }
      return tx
          .Exec(
              "UPDATE lifecycle.outbox SET attempts = attempts + 1, last_attempt_at = $2, "
              "last_error = $3 WHERE id = $1",
              {Param::Int(m->id), Param::Time(now), Param::Text(sent.ToString())})
          .status();
    });
    if (!s.ok()) return s;
    return attempt;
  }

 private:
  static std::string HexToBytes(std::string_view hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return 0;
      };
      out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
    }
    return out;
  }

  absl::StatusOr<std::optional<ContractAcceptance>> OneAcceptance(
      std::string_view sql, std::initializer_list<Param> params) {
    auto res = pool_->Exec(sql, params);
    if (!res.ok()) return res.status();
    if (res->rows() == 0) return std::nullopt;
    auto a = ReadAcceptance(*res, 0);
    if (!a.ok()) return a.status();
    return std::optional<ContractAcceptance>(*std::move(a));
  }

  db::Pool* pool_;  // Not owned.
};

}  // namespace

std::string_view CertKindName(CertKind kind) {
  switch (kind) {
    case CertKind::kQualified:
      return "QUALIFIED";
    case CertKind::kDevice:
      return "DEVICE";
    case CertKind::kTsa:
      return "TSA";
  }
  return "";
}

std::string_view CertStateName(CertState state) {
  switch (state) {
    case CertState::kPending:
      return "PENDING";
    case CertState::kIssued:
      return "ISSUED";
    case CertState::kRevoked:
      return "REVOKED";
    case CertState::kAbandoned:
      return "ABANDONED";
  }
  return "UNKNOWN";
}

std::unique_ptr<LifecycleStore> NewPostgresLifecycleStore(db::Pool* pool) {
  return std::make_unique<PostgresLifecycleStore>(pool);
}

}  // namespace qsign::lifecycle
