#include "services/web/sessions.h"

#include <openssl/rand.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"

namespace qsign::web {

std::string SessionStore::RandomToken() {
  unsigned char bytes[32];
  // The OS CSPRNG; without it no session can be made safely.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

std::shared_ptr<Session> SessionStore::Find(std::string_view id) {
  if (id.empty()) return nullptr;
  const absl::Time now = clock_->Now();
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
  absl::MutexLock lock(&mu_);
  if (sessions_.size() >= max_sessions_) EvictLocked();
  sessions_.emplace(std::move(id), s);
  return s;
}

void SessionStore::Rotate(const std::shared_ptr<Session>& session) {
  std::string fresh = RandomToken();
  absl::MutexLock lock(&mu_);
  absl::MutexLock session_lock(&session->mu);
  sessions_.erase(session->id);
  session->id = fresh;
  session->csrf = RandomToken();
  sessions_.emplace(std::move(fresh), session);
}

void SessionStore::Remove(const std::shared_ptr<Session>& session) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock session_lock(&session->mu);
  sessions_.erase(session->id);
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
