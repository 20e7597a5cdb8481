#include "services/web/sessions.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/aead.h"
#include "common/db/migrate.h"
#include "common/log.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "services/web/web_internal.h"

namespace qsign::web {
namespace {

using db::Param;
using Json = nlohmann::json;

constexpr int kMaxJobs = 8;

// Schema "web": browser sessions shared by the web replicas. No audit chain: a session is the
// web's own state (logins and every action are audited by the services the web calls).
constexpr char kV1[] = R"sql(
-- One browser session: SHA-256 of the cookie's id; its fields sealed with AES-256-GCM under
-- HMAC-SHA256(id, "qsign web session v1"), so neither column names a cookie or a token.
CREATE TABLE sessions (
  id_hash    bytea PRIMARY KEY,
  sealed     bytea NOT NULL,
  last_seen  timestamptz NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen);

-- A file being signed from the portal (the upload, then the signed file), sealed the same way.
CREATE TABLE sign_jobs (
  id_hash    bytea NOT NULL REFERENCES sessions ON DELETE CASCADE,
  job_id     text NOT NULL,
  sealed     bytea NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (id_hash, job_id)
);
)sql";

constexpr db::Migration kMigrations[] = {{1, "browser sessions and signing jobs", kV1}};

// The row's key and its sealing key, both one-way from the cookie's id.
struct RowKeys {
  std::string id_hash;
  std::string key;
};

RowKeys KeysOf(std::string_view id) {
  static constexpr char kLabel[] = "qsign web session v1";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), id.data(), static_cast<int>(id.size()),
       reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1, mac, &len);
  return {.id_hash = Sha256(id), .key = std::string(reinterpret_cast<char*>(mac), len)};
}

RowKeys KeysOfSession(Session& s) {
  absl::MutexLock lock(&s.mu);
  return KeysOf(s.id);
}

std::string SessionAad(const RowKeys& k) { return absl::StrCat("session\n", k.id_hash); }
std::string JobAad(const RowKeys& k, std::string_view job_id) {
  return absl::StrCat("job\n", k.id_hash, "\n", Av(job_id));
}

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

Json FieldsOf(const Session& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  return Json{{"csrf", s.csrf},
              {"login_id", s.login_id},
              {"verification_code", s.verification_code},
              {"login_username", s.login_username},
              {"bearer", std::string(s.bearer.value())},
              {"account_id", s.account_id},
              {"username", s.username},
              {"bearer_expires", Micros(s.bearer_expires)},
              {"officer", std::string(s.officer.value())},
              {"officer_id", s.officer_id},
              {"flash", s.flash},
              {"flash_error", s.flash_error}};
}

void SetFields(Session& s, const Json& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto str = [&](const char* k) { return j.value(k, std::string()); };
  s.csrf = str("csrf");
  s.login_id = str("login_id");
  s.verification_code = str("verification_code");
  s.login_username = str("login_username");
  s.bearer = SecretString(str("bearer"));
  s.account_id = str("account_id");
  s.username = str("username");
  s.bearer_expires = absl::FromUnixMicros(j.value("bearer_expires", int64_t{0}));
  s.officer = SecretString(str("officer"));
  s.officer_id = str("officer_id");
  s.flash = str("flash");
  s.flash_error = j.value("flash_error", false);
}

std::string Cbor(const Json& j) {
  std::vector<std::uint8_t> bytes = Json::to_cbor(j);
  return std::string(bytes.begin(), bytes.end());
}

absl::StatusOr<Json> FromCbor(std::string_view bytes) {
  Json j = Json::from_cbor(bytes.begin(), bytes.end(), true, false);
  if (j.is_discarded() || !j.is_object()) return absl::InternalError("web: a malformed record");
  return j;
}

Json::binary_t Binary(std::string_view s) { return Json::binary_t({s.begin(), s.end()}); }
std::string FromBinary(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_binary()) return "";
  const auto& b = j[key].get_binary();
  return std::string(b.begin(), b.end());
}

Json JobJson(const SignJob& job) {
  Json chain = Json::array();
  for (const std::string& c : job.chain_der) chain.push_back(Binary(c));
  return Json{{"file_name", job.file_name},
              {"content", Binary(job.content)},
              {"content_sha256", Binary(job.content_sha256)},
              {"pdf", job.pdf},
              {"prepared_pdf", Binary(job.prepared_pdf)},
              {"byte_range", job.byte_range},
              {"pdf_sha256", Binary(job.pdf_sha256)},
              {"field_name", job.field_name},
              {"level", job.level},
              {"chain_der", chain},
              {"signing_time", Micros(job.signing_time)},
              {"request_id", job.request_id},
              {"credential_id", job.credential_id},
              {"ec", job.ec},
              {"to_be_signed", Binary(job.to_be_signed)},
              {"result", Binary(job.result)},
              {"result_name", job.result_name},
              {"result_type", job.result_type},
              {"state", job.state}};
}

SignJob JobOf(const Json& j) {
  SignJob job;
  auto str = [&](const char* k) { return j.value(k, std::string()); };
  job.file_name = str("file_name");
  job.content = FromBinary(j, "content");
  job.content_sha256 = FromBinary(j, "content_sha256");
  job.pdf = j.value("pdf", false);
  job.prepared_pdf = FromBinary(j, "prepared_pdf");
  if (j.contains("byte_range")) job.byte_range = j["byte_range"].get<std::array<int64_t, 4>>();
  job.pdf_sha256 = FromBinary(j, "pdf_sha256");
  job.field_name = str("field_name");
  job.level = str("level");
  if (j.contains("chain_der")) {
    for (const Json& c : j["chain_der"]) {
      const auto& b = c.get_binary();
      job.chain_der.emplace_back(b.begin(), b.end());
    }
  }
  job.signing_time = absl::FromUnixMicros(j.value("signing_time", int64_t{0}));
  job.request_id = str("request_id");
  job.credential_id = str("credential_id");
  job.ec = j.value("ec", true);
  job.to_be_signed = FromBinary(j, "to_be_signed");
  job.result = FromBinary(j, "result");
  job.result_name = str("result_name");
  job.result_type = str("result_type");
  job.state = str("state");
  return job;
}

absl::StatusOr<std::string> Seal(const RowKeys& k, std::string_view aad, const Json& j) {
  return SealAes256Gcm(k.key, Cbor(j), aad);
}

absl::StatusOr<Json> Open(const RowKeys& k, std::string_view aad, std::string_view sealed) {
  absl::StatusOr<std::string> plain = OpenAes256Gcm(k.key, sealed, aad);
  if (!plain.ok()) return plain.status();
  return FromCbor(*plain);
}

void LogDbError(std::string_view what, const absl::Status& status) {
  Log(LogLevel::kWarning, "web", what, {{"status", status.ToString()}});
}

}  // namespace

absl::Status SessionStore::Migrate(db::Pool& pool) {
  return db::ApplyMigrations(pool, "web", kMigrations);
}

std::string SessionStore::RandomToken() {
  unsigned char bytes[32];
  // The OS CSPRNG; without it no session can be made safely.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

std::shared_ptr<Session> SessionStore::Find(std::string_view id) {
  if (id.empty() || id.size() > 100) return nullptr;
  const absl::Time now = clock_->Now();
  if (pool_ != nullptr) {
    const RowKeys k = KeysOf(id);
    auto row = pool_->Exec("SELECT sealed, last_seen FROM web.sessions WHERE id_hash = $1",
                           {Param::Bytes(k.id_hash)});
    if (!row.ok()) {
      LogDbError("sessions: read failed", row.status());
      return nullptr;
    }
    if (row->rows() != 1) return nullptr;
    auto sealed = row->GetBytes(0, 0);
    auto last_seen = row->GetTime(0, 1);
    if (!sealed.ok() || !last_seen.ok()) return nullptr;
    if (now - *last_seen > idle_) {
      (void)pool_->Exec("DELETE FROM web.sessions WHERE id_hash = $1", {Param::Bytes(k.id_hash)});
      return nullptr;
    }
    absl::StatusOr<Json> fields = Open(k, SessionAad(k), *sealed);
    if (!fields.ok()) return nullptr;  // Not this cookie's row (cannot happen but by forgery).
    auto s = std::make_shared<Session>();
    absl::MutexLock session_lock(&s->mu);
    s->id = std::string(id);
    SetFields(*s, *fields);
    s->stored = Cbor(*fields);
    s->last_seen = now;
    // The idle clock, to the minute: one write a minute per active browser, not one a request.
    if (now - *last_seen > absl::Minutes(1)) {
      (void)pool_->Exec("UPDATE web.sessions SET last_seen = $2 WHERE id_hash = $1",
                        {Param::Bytes(k.id_hash), Param::Time(now)});
    }
    return s;
  }
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(std::string(id));
  if (it == sessions_.end()) return nullptr;
  std::shared_ptr<Session> s = it->second;
  absl::MutexLock session_lock(&s->mu);
  if (now - s->last_seen > idle_) {
    sessions_.erase(it);
    return nullptr;
  }
  s->last_seen = now;
  return s;
}

std::shared_ptr<Session> SessionStore::Create() {
  auto s = std::make_shared<Session>();
  std::string id = RandomToken();
  {
    absl::MutexLock session_lock(&s->mu);
    s->id = id;
    s->csrf = RandomToken();
    s->last_seen = clock_->Now();
  }
  if (pool_ != nullptr) {
    if (absl::Status st = Insert(*s); !st.ok()) LogDbError("sessions: insert failed", st);
    DeleteExpired();
    return s;
  }
  absl::MutexLock lock(&mu_);
  if (sessions_.size() >= max_sessions_) EvictLocked();
  sessions_.emplace(std::move(id), s);
  return s;
}

absl::Status SessionStore::Insert(Session& s) {
  std::string id_hash, sealed;
  absl::Time now;
  {
    absl::MutexLock session_lock(&s.mu);
    const RowKeys k = KeysOf(s.id);
    const Json fields = FieldsOf(s);
    absl::StatusOr<std::string> box = Seal(k, SessionAad(k), fields);
    if (!box.ok()) return box.status();
    id_hash = k.id_hash;
    sealed = *std::move(box);
    s.stored = Cbor(fields);
    now = s.last_seen;
  }
  return pool_
      ->Exec(
          "INSERT INTO web.sessions (id_hash, sealed, last_seen, created_at) "
          "VALUES ($1, $2, $3, $3)",
          {Param::Bytes(id_hash), Param::Bytes(sealed), Param::Time(now)})
      .status();
}

void SessionStore::DeleteExpired() {
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    if (now - last_cleanup_ < absl::Minutes(1)) return;
    last_cleanup_ = now;
  }
  auto deleted =
      pool_->Exec("DELETE FROM web.sessions WHERE last_seen < $1", {Param::Time(now - idle_)});
  if (!deleted.ok()) LogDbError("sessions: expiry failed", deleted.status());
}

void SessionStore::Rotate(const std::shared_ptr<Session>& session) {
  std::string fresh = RandomToken();
  if (pool_ != nullptr) {
    std::string old_id;
    {
      absl::MutexLock session_lock(&session->mu);
      old_id = std::exchange(session->id, fresh);
      session->csrf = RandomToken();
      session->last_seen = clock_->Now();
    }
    if (absl::Status st = Insert(*session); !st.ok()) LogDbError("sessions: rotate failed", st);
    (void)pool_->Exec("DELETE FROM web.sessions WHERE id_hash = $1",
                      {Param::Bytes(KeysOf(old_id).id_hash)});
    return;
  }
  absl::MutexLock lock(&mu_);
  absl::MutexLock session_lock(&session->mu);
  sessions_.erase(session->id);
  session->id = fresh;
  session->csrf = RandomToken();
  sessions_.emplace(std::move(fresh), session);
}

void SessionStore::Remove(const std::shared_ptr<Session>& session) {
  if (pool_ != nullptr) {
    std::string id;
    {
      absl::MutexLock session_lock(&session->mu);
      id = session->id;
      session->stored.clear();  // Nothing to save any more.
    }
    auto deleted = pool_->Exec("DELETE FROM web.sessions WHERE id_hash = $1",
                               {Param::Bytes(KeysOf(id).id_hash)});
    if (!deleted.ok()) LogDbError("sessions: delete failed", deleted.status());
    return;
  }
  absl::MutexLock lock(&mu_);
  absl::MutexLock session_lock(&session->mu);
  sessions_.erase(session->id);
}

void SessionStore::Save(const std::shared_ptr<Session>& session) {
  if (pool_ == nullptr || session == nullptr) return;
  RowKeys k;
  Json now, before;
  {
    absl::MutexLock session_lock(&session->mu);
    if (session->stored.empty()) return;  // Removed.
    now = FieldsOf(*session);
    const std::string cbor = Cbor(now);
    if (cbor == session->stored) return;
    absl::StatusOr<Json> was = FromCbor(session->stored);
    if (was.ok()) before = *std::move(was);
    session->stored = cbor;
    k = KeysOf(session->id);
  }
  // Only the fields this request changed, merged into the row as it is now: another request of
  // the same browser (on another replica) may have changed others meanwhile.
  absl::Status st = pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
    auto row = tx.Exec("SELECT sealed FROM web.sessions WHERE id_hash = $1 FOR UPDATE",
                       {Param::Bytes(k.id_hash)});
    if (!row.ok()) return row.status();
    if (row->rows() != 1) return absl::OkStatus();  // Logged out meanwhile: stays so.
    auto sealed = row->GetBytes(0, 0);
    if (!sealed.ok()) return sealed.status();
    absl::StatusOr<Json> current = Open(k, SessionAad(k), *sealed);
    if (!current.ok()) return current.status();
    for (auto& [name, value] : now.items()) {
      if (!before.contains(name) || before[name] != value) (*current)[name] = value;
    }
    absl::StatusOr<std::string> box = Seal(k, SessionAad(k), *current);
    if (!box.ok()) return box.status();
    return tx
        .Exec("UPDATE web.sessions SET sealed = $2 WHERE id_hash = $1",
              {Param::Bytes(k.id_hash), Param::Bytes(*box)})
        .status();
  });
  if (!st.ok()) LogDbError("sessions: save failed", st);
}

absl::Status SessionStore::PutJob(Session& session, const std::string& job_id, const SignJob& job) {
  if (pool_ == nullptr) {
    absl::MutexLock lock(&session.mu);
    if (session.jobs.size() >= kMaxJobs) session.jobs.erase(session.jobs.begin());
    session.jobs.emplace(job_id, job);
    return absl::OkStatus();
  }
  const RowKeys k = KeysOfSession(session);
  absl::StatusOr<std::string> box = Seal(k, JobAad(k, job_id), JobJson(job));
  if (!box.ok()) return box.status();
  return pool_->InTransaction([&](db::Tx& tx) -> absl::Status {
    auto inserted = tx.Exec(
        "INSERT INTO web.sign_jobs (id_hash, job_id, sealed, created_at) VALUES ($1, $2, $3, $4)",
        {Param::Bytes(k.id_hash), Param::Text(job_id), Param::Bytes(*box),
         Param::Time(clock_->Now())});
    if (!inserted.ok()) return inserted.status();
    return tx
        .Exec(
            "DELETE FROM web.sign_jobs WHERE id_hash = $1 AND job_id NOT IN (SELECT job_id "
            "FROM web.sign_jobs WHERE id_hash = $1 ORDER BY created_at DESC LIMIT $2)",
            {Param::Bytes(k.id_hash), Param::Int(kMaxJobs)})
        .status();
  });
}

absl::StatusOr<SignJob> SessionStore::GetJob(Session& session, std::string_view job_id) {
  const absl::Status unknown = absl::NotFoundError("job: unknown");
  if (pool_ == nullptr) {
    absl::MutexLock lock(&session.mu);
    auto it = session.jobs.find(std::string(job_id));
    if (it == session.jobs.end()) return unknown;
    return it->second;
  }
  if (job_id.empty() || job_id.size() > 64) return unknown;
  const RowKeys k = KeysOfSession(session);
  auto row = pool_->Exec("SELECT sealed FROM web.sign_jobs WHERE id_hash = $1 AND job_id = $2",
                         {Param::Bytes(k.id_hash), Param::Text(job_id)});
  if (!row.ok()) return row.status();
  if (row->rows() != 1) return unknown;
  auto sealed = row->GetBytes(0, 0);
  if (!sealed.ok()) return sealed.status();
  absl::StatusOr<Json> j = Open(k, JobAad(k, job_id), *sealed);
  if (!j.ok()) return unknown;
  return JobOf(*j);
}

absl::Status SessionStore::UpdateJob(Session& session, std::string_view job_id,
                                     const SignJob& job) {
  if (pool_ == nullptr) {
    absl::MutexLock lock(&session.mu);
    auto it = session.jobs.find(std::string(job_id));
    if (it != session.jobs.end()) it->second = job;
    return absl::OkStatus();
  }
  const RowKeys k = KeysOfSession(session);
  absl::StatusOr<std::string> box = Seal(k, JobAad(k, job_id), JobJson(job));
  if (!box.ok()) return box.status();
  return pool_
      ->Exec("UPDATE web.sign_jobs SET sealed = $3 WHERE id_hash = $1 AND job_id = $2",
             {Param::Bytes(k.id_hash), Param::Text(job_id), Param::Bytes(*box)})
      .status();
}

void SessionStore::EvictLocked() {
  // Idle ones first; when none is idle, the least recently seen.
  const absl::Time now = clock_->Now();
  auto oldest = sessions_.end();
  absl::Time oldest_seen = absl::InfiniteFuture();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    absl::Time seen;
    {
      absl::MutexLock session_lock(&it->second->mu);
      seen = it->second->last_seen;
    }
    if (now - seen > idle_) {
      sessions_.erase(it++);
      continue;
    }
    if (seen < oldest_seen) {
      oldest_seen = seen;
      oldest = it;
    }
    ++it;
  }
  if (sessions_.size() >= max_sessions_ && oldest != sessions_.end()) sessions_.erase(oldest);
}

}  // namespace qsign::web
