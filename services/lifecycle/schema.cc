#include "services/lifecycle/schema.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/db/audit.h"
#include "common/db/migrate.h"
#include "common/strings.h"

namespace qsign::lifecycle {
namespace {

constexpr char kV1[] = R"sql(
-- The CA hierarchy: one row per CA or OCSP responder certificate, its key in the HSM.
CREATE TABLE cas (
  name            text PRIMARY KEY,
  key_id          text NOT NULL UNIQUE,
  key_type        text NOT NULL,
  issuer          text NOT NULL,
  certificate_der bytea NOT NULL,
  serial_hex      text NOT NULL,
  not_after       timestamptz NOT NULL,
  next_crl_number bigint NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);

-- Every CRL issued, per CA; the newest (highest number) is served.
CREATE TABLE crls (
  ca_name     text NOT NULL REFERENCES cas (name),
  crl_number  bigint NOT NULL,
  this_update timestamptz NOT NULL,
  next_update timestamptz NOT NULL,
  der         bytea NOT NULL,
  PRIMARY KEY (ca_name, crl_number)
);
)sql";

constexpr char kV2[] = R"sql(
-- Qualified and device certificates. A qualified one starts as an intent (PENDING: serial,
-- validity and subject fixed, nothing signed), becomes ISSUED when signed and stored, REVOKED;
-- an interrupted intent that is given up becomes ABANDONED.
CREATE TABLE certificates (
  certificate_id      text PRIMARY KEY,
  -- Insertion order, to list newest first when created_at is the same second.
  seq                 bigserial NOT NULL UNIQUE,
  account_id          text NOT NULL,
  kind                text NOT NULL CHECK (kind IN ('QUALIFIED', 'DEVICE')),
  state               text NOT NULL CHECK (state IN ('PENDING', 'ISSUED', 'REVOKED', 'ABANDONED')),
  ca_name             text NOT NULL REFERENCES cas (name),
  serial_hex          text NOT NULL UNIQUE,
  key_type            text NOT NULL,
  client_request_id   text NOT NULL,
  request_fingerprint text NOT NULL,
  renewal_of          text REFERENCES certificates (certificate_id),
  given_name          text NOT NULL,
  surname             text NOT NULL,
  national_id         text NOT NULL,
  email               text NOT NULL,
  legal_person_name   text,
  legal_person_pib    text,
  device_id           text NOT NULL,
  device_name         text NOT NULL,
  device_public_key   bytea,
  certificate_der     bytea,
  subject_dn          text NOT NULL,
  not_before          timestamptz NOT NULL,
  not_after           timestamptz NOT NULL,
  created_at          timestamptz NOT NULL,
  issued_at           timestamptz,
  attached            boolean NOT NULL DEFAULT false,
  revoked_at          timestamptz,
  revocation_reason   int NOT NULL DEFAULT 0,
  key_destroyed       boolean NOT NULL DEFAULT false,
  abandoned_at        timestamptz,
  reminder_queued_at  timestamptz,
  CHECK (state = 'PENDING' OR state = 'ABANDONED' OR certificate_der IS NOT NULL),
  CHECK (state <> 'REVOKED' OR revoked_at IS NOT NULL)
);
CREATE UNIQUE INDEX certificates_request ON certificates (account_id, client_request_id)
  WHERE client_request_id <> '';
CREATE UNIQUE INDEX certificates_renewal ON certificates (renewal_of) WHERE state <> 'ABANDONED';
CREATE UNIQUE INDEX certificates_one_pending ON certificates (account_id) WHERE state = 'PENDING';
CREATE INDEX certificates_account ON certificates (account_id, created_at, seq);
CREATE INDEX certificates_revoked ON certificates (ca_name) WHERE state = 'REVOKED';

CREATE TABLE contract_acceptances (
  account_id     text NOT NULL,
  version        text NOT NULL,
  text_sha256    bytea NOT NULL,
  accepted_at    timestamptz NOT NULL,
  client_address text NOT NULL,
  PRIMARY KEY (account_id, version)
);

CREATE TABLE legal_person_approvals (
  approval_id       text PRIMARY KEY,
  account_id        text NOT NULL,
  organization_name text NOT NULL,
  pib               text NOT NULL,
  approved_by       text NOT NULL,
  note              text NOT NULL,
  approved_at       timestamptz NOT NULL
);
CREATE INDEX legal_person_approvals_account ON legal_person_approvals (account_id, pib);

CREATE TABLE revoke_all_requests (
  id          bigserial PRIMARY KEY,
  account_id  text NOT NULL,
  reason      int NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz,
  summary     text
);

-- Mail to send, written in the transaction of what causes it; a sender delivers and marks it.
CREATE TABLE outbox (
  id         bigserial PRIMARY KEY,
  kind       text NOT NULL,
  recipient  text NOT NULL,
  subject    text NOT NULL,
  body       text NOT NULL,
  created_at timestamptz NOT NULL,
  sent_at    timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
)sql";

// Delivery attempts: a failed send keeps the row, counts the attempt and keeps the error.
constexpr char kV3[] = R"sql(
ALTER TABLE outbox ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE outbox ADD COLUMN last_error text;
)sql";

// Revoke-all as a durable job (replaces revoke_all_requests, kept for its history): one row per
// job with its steps, written with the audit record; the scheduler resumes unfinished ones.
// The sweeper finds keys still to destroy (revoked, abandoned, expired) through the index.
constexpr char kV4[] = R"sql(
CREATE TABLE revoke_all_jobs (
  id                   bigserial PRIMARY KEY,
  account_id           text NOT NULL,
  reason               int NOT NULL,
  requested_by         text NOT NULL,
  client_address       text NOT NULL,
  state                text NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
  devices_done         boolean NOT NULL DEFAULT false,
  sessions_done        boolean NOT NULL DEFAULT false,
  certificates_done    boolean NOT NULL DEFAULT false,
  keys_done            boolean NOT NULL DEFAULT false,
  devices_deactivated  int NOT NULL DEFAULT 0,
  sessions_ended       int NOT NULL DEFAULT 0,
  certificates_revoked int NOT NULL DEFAULT 0,
  attempts             int NOT NULL DEFAULT 0,
  last_error           text NOT NULL DEFAULT '',
  created_at           timestamptz NOT NULL,
  updated_at           timestamptz NOT NULL,
  finished_at          timestamptz,
  CHECK (state = 'RUNNING' OR finished_at IS NOT NULL)
);
CREATE UNIQUE INDEX revoke_all_jobs_one_running ON revoke_all_jobs (account_id)
  WHERE state = 'RUNNING';
CREATE INDEX certificates_keys_left ON certificates (not_after)
  WHERE kind = 'QUALIFIED' AND key_destroyed = false;
)sql";

// The timestamp authority's certificates (IssueTsaCertificate): kind TSA, no account, the TSA's
// public key in device_public_key (the key a service certificate is for).
constexpr char kV5[] = R"sql(
ALTER TABLE certificates DROP CONSTRAINT certificates_kind_check;
ALTER TABLE certificates ADD CONSTRAINT certificates_kind_check
  CHECK (kind IN ('QUALIFIED', 'DEVICE', 'TSA'));
)sql";

// Revocation finishes whatever happens after it is asked for (issue 11): the request is
// recorded before the signer disables the credential, and the sweeper finishes an unfinished one
// (credential disabled, certificate marked revoked, key destroyed). An issuance remembers the
// login (session auth_time) that asked for it: a revoke-all running or finished since then
// abandons it instead of letting it become active.
constexpr char kV6[] = R"sql(
CREATE TABLE revocation_requests (
  certificate_id text PRIMARY KEY REFERENCES certificates (certificate_id),
  reason         int NOT NULL,
  requested_by   text NOT NULL,
  client_address text NOT NULL,
  requested_at   timestamptz NOT NULL,
  attempts       int NOT NULL DEFAULT 0,
  last_error     text NOT NULL DEFAULT '',
  finished_at    timestamptz
);
CREATE INDEX revocation_requests_unfinished ON revocation_requests (requested_at)
  WHERE finished_at IS NULL;
ALTER TABLE certificates ADD COLUMN authorized_at timestamptz;
)sql";

// Every change of what OCSP answers about a certificate (a new row, its state, revocation time or
// reason, or the row gone), whoever makes it, is announced on the channel status_cache.h's
// kStatusChannel names, in the same transaction: replicas that answer from a status cache empty
// it when the change commits.
constexpr char kV8[] = R"sql(
CREATE FUNCTION certificates_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('lifecycle_cert_status', OLD.ca_name || ' ' || OLD.serial_hex);
  ELSE
    PERFORM pg_notify('lifecycle_cert_status', NEW.ca_name || ' ' || NEW.serial_hex);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER certificates_status_changed
  AFTER UPDATE OF state, revoked_at, revocation_reason, ca_name, serial_hex ON certificates
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                     OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                     OR OLD.revocation_reason IS DISTINCT FROM NEW.revocation_reason
                     OR OLD.ca_name IS DISTINCT FROM NEW.ca_name
                     OR OLD.serial_hex IS DISTINCT FROM NEW.serial_hex)
  EXECUTE FUNCTION certificates_notify_status();
CREATE TRIGGER certificates_status_inserted_or_deleted AFTER INSERT OR DELETE ON certificates
  FOR EACH ROW EXECUTE FUNCTION certificates_notify_status();
)sql";

}  // namespace

absl::Status MigrateLifecycleSchema(db::Pool& pool) {
  static const std::string v1 = absl::StrCat(kV1, Av(db::AuditTableSql()));
  const db::Migration migrations[] = {
      {1, "CAs, CRLs, audit log", v1},
      {2, "certificates, contracts, legal persons, revoke-all, outbox", kV2},
      {3, "outbox delivery attempts", kV3},
      {4, "revoke-all jobs, keys left to destroy", kV4},
      {5, "TSA certificates", kV5},
      {6, "revocation requests, issuance's login time", kV6},
      {7, "audit log by target and actor", db::AuditIndexSql()},
      {8, "NOTIFY on certificate status changes", kV8}};
  return db::ApplyMigrations(pool, kSchema, migrations);
}

}  // namespace qsign::lifecycle
