#include "services/signer/key_pool.h"

#include <openssl/rand.h>

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::signer {
namespace {

constexpr char kPrefix[] = "pool/";

absl::StatusOr<std::string> NewKeyId(hsm::KeyType type, absl::Time now) {
  unsigned char random[8];
  if (RAND_bytes(random, sizeof(random)) != 1) return absl::InternalError("RAND_bytes failed");
  return absl::StrCat(kPrefix, Av(hsm::KeyTypeName(type)), "/", absl::ToUnixSeconds(now), "/",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(random), sizeof(random))));
}

}  // namespace

std::string_view KeyPool::Prefix() { return kPrefix; }

std::optional<absl::Time> KeyPool::MadeAt(std::string_view key_id) {
  if (!key_id.starts_with(kPrefix)) return std::nullopt;
  std::vector<absl::string_view> parts =
      absl::StrSplit(Av(key_id.substr(sizeof(kPrefix) - 1)), '/');
  int64_t seconds = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &seconds)) return std::nullopt;
  return absl::FromUnixSeconds(seconds);
}

KeyPool::KeyPool(hsm::Hsm* hsm, const Clock* clock, KeyPoolConfig config)
    : hsm_(hsm), clock_(clock), config_(std::move(config)) {}

KeyPool::~KeyPool() { Stop(); }

void KeyPool::Start() {
  if (config_.size <= 0 || refill_.joinable()) return;
  refill_ = std::thread([this] { Run(); });
}

void KeyPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (refill_.joinable()) refill_.join();
  std::vector<std::string> left;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [type, keys] : ready_) {
      for (Ready_& r : keys) left.push_back(std::move(r.key.key_id));
      keys.clear();
    }
  }
  for (const std::string& id : left) {
    if (absl::Status s = hsm_->DestroyKeyPair(id);
        !s.ok() && s.code() != absl::StatusCode::kNotFound) {
      // The orphan-key sweep destroys it later (older than twice max_age).
      Log(LogLevel::kWarning, "signer", "unused pool key not destroyed at shutdown",
          {{"key_id", id}, {"status", s.ToString()}});
    }
  }
}

std::optional<PooledKey> KeyPool::Take(hsm::KeyType type) {
  std::optional<PooledKey> taken;
  std::vector<std::string> expired;
  {
    absl::MutexLock lock(&mu_);
    wake_ = true;
    const absl::Time oldest_allowed = clock_->Now() - config_.max_age;
    std::deque<Ready_>& keys = ready_[type];
    while (!keys.empty() && !taken.has_value()) {
      Ready_ r = std::move(keys.front());
      keys.pop_front();
      if (r.made_at < oldest_allowed) {
        expired.push_back(std::move(r.key.key_id));  // Never handed out.
      } else {
        taken = std::move(r.key);
      }
    }
  }
  for (const std::string& id : expired) (void)hsm_->DestroyKeyPair(id);
  return taken;
}

int KeyPool::Ready(hsm::KeyType type) {
  absl::MutexLock lock(&mu_);
  auto it = ready_.find(type);
  return it == ready_.end() ? 0 : static_cast<int>(it->second.size());
}

absl::Status KeyPool::GenerateOne(hsm::KeyType type) {
  const absl::Time now = clock_->Now();
  absl::StatusOr<std::string> id = NewKeyId(type, now);
  if (!id.ok()) return id.status();
  absl::StatusOr<hsm::PublicKey> pub = hsm_->GenerateKeyPair(*id, type);
  if (!pub.ok()) {
    (void)hsm_->DestroyKeyPair(*id);  // Whatever a failed generation may have left.
    return pub.status();
  }
  bool keep = false;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      ready_[type].push_back(
          Ready_{.key = {.key_id = *id, .public_key = *std::move(pub)}, .made_at = now});
      keep = true;
    }
  }
  if (!keep) (void)hsm_->DestroyKeyPair(*id);  // Stop came during the generation.
  return absl::OkStatus();
}

absl::Status KeyPool::FillNow() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("the key pool is stopped");
  }
  for (hsm::KeyType type : config_.types) {
    while (Ready(type) < config_.size) {
      if (absl::Status s = GenerateOne(type); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void KeyPool::ExpireOld() {
  std::vector<std::string> expired;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time oldest_allowed = clock_->Now() - config_.max_age;
    for (auto& [type, keys] : ready_) {
      while (!keys.empty() && keys.front().made_at < oldest_allowed) {
        expired.push_back(std::move(keys.front().key.key_id));
        keys.pop_front();
      }
    }
  }
  for (const std::string& id : expired) (void)hsm_->DestroyKeyPair(id);
}

void KeyPool::Run() {
  absl::Duration backoff = absl::ZeroDuration();
  while (true) {
    ExpireOld();
    bool generated = false;
    for (hsm::KeyType type : config_.types) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      if (Ready(type) >= config_.size) continue;
      if (absl::Status s = GenerateOne(type); !s.ok()) {
        Log(LogLevel::kWarning, "signer", "pool key generation failed",
            {{"key_type", std::string(hsm::KeyTypeName(type))}, {"status", s.ToString()}});
        backoff = std::min(absl::Seconds(30), std::max(absl::Seconds(1), 2 * backoff));
        break;
      }
      backoff = absl::ZeroDuration();
      generated = true;
    }
    if (generated) continue;  // Top up every type before sleeping.
    // Wait for a Take, for the oldest key to expire, or for Stop.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &KeyPool::Woken),
                         backoff > absl::ZeroDuration() ? backoff : config_.max_age / 4);
    if (stopping_) return;
    wake_ = false;
  }
}

}  // namespace qsign::signer
