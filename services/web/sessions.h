// Browser sessions of the web front ends: a random 256-bit id in an HttpOnly, Secure, SameSite=Lax
// cookie, a CSRF token per session, and what the session holds for each area (the portal's
// pending login and session token, the officer's credential, signing jobs). Secrets in a session
// never appear in a page, a log or a URL.
//
// With a database (web replicas behind a plain round-robin balancer) every request reads its
// session from PostgreSQL (schema "web"): a row keyed by SHA-256 of the cookie's id, its content
// sealed with AES-256-GCM under a key derived from the id itself (HMAC-SHA256), so the table
// alone neither names a cookie nor reveals a session token; a request's changes are merged into
// the row field by field (two requests of one browser at once do not undo each other); signing
// jobs are rows of their own, sealed the same way. Logout deletes the row, idle rows expire.
// Without a database the sessions live in this process (one replica).
#ifndef QSIGN_SERVICES_WEB_SESSIONS_H_
#define QSIGN_SERVICES_WEB_SESSIONS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/secret.h"

namespace qsign::web {

// A file being signed from the portal, from upload to download. The job keeps what the
// signature is made of (the file, the PDF with its placeholder, the level, the certificate
// chain, the time), not the prepared CMS itself: sign.cc rebuilds that (common/signdoc) when the
// approval arrives and checks that it is exactly the hash the user approved.
struct SignJob {
  std::string file_name;
  std::string content;         // The upload; dropped once signed.
  std::string content_sha256;  // Raw.
  bool pdf = false;            // PAdES inside the PDF, else a detached CAdES .p7s.
  std::string prepared_pdf;    // PAdES: the PDF with the signature's placeholder.
  std::array<int64_t, 4> byte_range{};
  std::string pdf_sha256;  // SHA-256 over the byte ranges.
  std::string field_name;
  std::string level = "B-T";           // B-B, B-T or B-LT.
  std::vector<std::string> chain_der;  // The signer's certificate, then its issuers.
  absl::Time signing_time;             // The PDF's /M, the CMS signingTime.
  std::string request_id;              // Consent's SIGN request.
  std::string credential_id;
  bool ec = true;            // The credential's key is EC (else RSA).
  std::string to_be_signed;  // SHA-256 of the CMS signed attributes: what the SAD covers.
  std::string result;        // The signed PDF, or the .p7s, once done.
  std::string result_name;
  std::string result_type;
  // pending, done, denied, expired, failed, tsa_failed (the timestamp authority did not
  // answer after the approval), ocsp_failed (no OCSP/CRL answer for B-LT).
  std::string state = "pending";
};

struct Session {
  absl::Mutex mu;
  std::string id ABSL_GUARDED_BY(mu);
  std::string csrf ABSL_GUARDED_BY(mu);
  absl::Time last_seen ABSL_GUARDED_BY(mu);
  // Portal: a login waiting for the app, then the session token from identity.
  std::string login_id ABSL_GUARDED_BY(mu);
  std::string verification_code ABSL_GUARDED_BY(mu);
  std::string login_username ABSL_GUARDED_BY(mu);
  SecretString bearer ABSL_GUARDED_BY(mu);  // "Bearer <session token>"; empty: logged out.
  std::string account_id ABSL_GUARDED_BY(mu);
  std::string username ABSL_GUARDED_BY(mu);
  absl::Time bearer_expires ABSL_GUARDED_BY(mu);
  // Registration office: "Operator <id>.<secret>"; empty: not signed in.
  SecretString officer ABSL_GUARDED_BY(mu);
  std::string officer_id ABSL_GUARDED_BY(mu);
  // One-shot message for the next page (a message key, or text from a service).
  std::string flash ABSL_GUARDED_BY(mu);
  bool flash_error ABSL_GUARDED_BY(mu) = false;
  // Without a database: signing jobs by their id (a random token in their URLs).
  std::map<std::string, SignJob> jobs ABSL_GUARDED_BY(mu);
  // With a database: the fields as read (CBOR), to write back only what a request changed.
  std::string stored ABSL_GUARDED_BY(mu);
};

class SessionStore {
 public:
  // `pool`: the database the replicas share (nullptr: sessions in this process only). Not owned.
  SessionStore(db::Pool* pool, const Clock* clock, absl::Duration idle, size_t max_sessions)
      : pool_(pool), clock_(clock), idle_(idle), max_sessions_(max_sessions) {}

  // Creates or updates the schema "web" (sessions, sign_jobs).
  static absl::Status Migrate(db::Pool& pool);

  // The live session with this cookie value, its last_seen refreshed; nullptr when unknown,
  // idle for too long, or not readable (a forged cookie, a database error).
  std::shared_ptr<Session> Find(std::string_view id);
  // A new empty session with a fresh id and CSRF token (evicting the oldest when full).
  std::shared_ptr<Session> Create();
  // Gives `session` a new id and CSRF token (after a sign-in: no session fixation). Its signing
  // jobs do not follow it.
  void Rotate(const std::shared_ptr<Session>& session);
  void Remove(const std::shared_ptr<Session>& session);
  // After a request: writes what it changed in `session` (with a database; nothing otherwise).
  void Save(const std::shared_ptr<Session>& session);

  // Signing jobs of a session (at most 8: the oldest goes).
  absl::Status PutJob(Session& session, const std::string& job_id, const SignJob& job);
  // NOT_FOUND when the session has no such job.
  absl::StatusOr<SignJob> GetJob(Session& session, std::string_view job_id);
  absl::Status UpdateJob(Session& session, std::string_view job_id, const SignJob& job);

  static std::string RandomToken();

 private:
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Database: the row's insertion (a new id) and the expired rows' deletion (once a minute).
  absl::Status Insert(Session& session);
  void DeleteExpired();

  db::Pool* const pool_;  // Not owned; nullptr: in this process.
  const Clock* clock_;    // Not owned.
  const absl::Duration idle_;
  const size_t max_sessions_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  absl::Time last_cleanup_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_SESSIONS_H_
