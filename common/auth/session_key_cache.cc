#include "common/auth/session_key_cache.h"

#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace qsign::auth {
namespace {

constexpr char kAgeMetric[] = "qsign_session_feed_age_seconds";
constexpr char kAgeHelp[] =
    "Seconds since this service last read identity's session keys and revocation feed.";
constexpr char kErrorsMetric[] = "qsign_session_feed_errors_total";
constexpr char kErrorsHelp[] = "Failed reads of identity's session keys or revocation feed.";
// A feed far behind is read in pages; this many in one Refresh at most.
constexpr int kMaxPagesPerRefresh = 1000;

bool SameKeys(const std::vector<SessionFeed::Key>& a, const std::vector<SessionFeed::Key>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].key_id != b[i].key_id || a[i].public_key_spki != b[i].public_key_spki) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionKeyCache>> SessionKeyCache::New(
    SessionFeed* feed, const Clock* clock, SessionKeyCacheOptions options) {
  if (options.refresh_interval <= absl::ZeroDuration() ||
      options.max_staleness <= options.refresh_interval) {
    return absl::InvalidArgumentError(
        "session key cache: 0 < refresh_interval < max_staleness required");
  }
  return std::unique_ptr<SessionKeyCache>(new SessionKeyCache(feed, clock, std::move(options)));
}

SessionKeyCache::SessionKeyCache(SessionFeed* feed, const Clock* clock,
                                 SessionKeyCacheOptions options)
    : feed_(feed),
      clock_(clock),
      options_(std::move(options)),
      created_at_(clock->Now()),
      errors_(metrics::Registry::Global().GetCounter(kErrorsMetric, kErrorsHelp,
                                                     {{"component", options_.component}})) {
  collector_ = metrics::Registry::Global().AddCollector([this](metrics::Registry& r) {
    absl::Duration age = FeedAge();
    if (age == absl::InfiniteDuration()) age = clock_->Now() - created_at_;
    r.SetGauge(kAgeMetric, kAgeHelp, {{"component", options_.component}},
               absl::ToDoubleSeconds(age));
  });
}

SessionKeyCache::~SessionKeyCache() {
  Stop();
  metrics::Registry::Global().RemoveCollector(collector_);
}

void SessionKeyCache::Start() {
  if (thread_.joinable()) std::abort();  // Started twice: a wiring bug.
  thread_ = std::thread([this] { Loop(); });
}

void SessionKeyCache::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void SessionKeyCache::Loop() {
  while (true) {
    (void)Refresh();  // Failures are counted, logged and show as the feed's age.
    absl::MutexLock lock(&mu_);
    const absl::Condition stopped(&stop_);
    if (mu_.AwaitWithTimeout(stopped, options_.refresh_interval)) return;
  }
}

absl::Status SessionKeyCache::Refresh() {
  absl::MutexLock refresh(&refresh_mu_);
  const absl::Time started = clock_->Now();
  absl::Status status = [&]() -> absl::Status {
    auto keys = feed_->GetSessionKeys();
    if (!keys.ok()) return keys.status();
    bool have_verifier;
    {
      absl::MutexLock lock(&mu_);
      have_verifier = verifier_ != nullptr;
    }
    if (!have_verifier || !SameKeys(*keys, keys_)) {
      std::map<std::string, std::string> trusted;
      for (const auto& k : *keys) trusted[k.key_id] = k.public_key_spki;
      auto verifier = SessionTokenVerifier::New(trusted);
      if (!verifier.ok()) return verifier.status();
      keys_ = *std::move(keys);
      absl::MutexLock lock(&mu_);
      verifier_ = std::shared_ptr<const SessionTokenVerifier>(*std::move(verifier));
    }
    for (int page = 0; page < kMaxPagesPerRefresh; ++page) {
      const uint64_t after = revocations_.last_sequence();
      auto next = feed_->ListSessionRevocations(after);
      if (!next.ok()) return next.status();
      revocations_.Apply(next->revocations);
      if (next->revocations.empty() || revocations_.last_sequence() == after) {
        revocations_.Forget(started);
        return absl::OkStatus();
      }
    }
    return absl::DeadlineExceededError("revocation feed: too many pages behind");
  }();
  if (!status.ok()) {
    errors_->Increment();
    if (!failing_) {
      Log(LogLevel::kWarning, options_.component,
          "cannot read identity's session keys or revocation feed; Bearer calls fail once it is "
          "older than the limit",
          {{"status", status.ToString()},
           {"max_staleness", absl::FormatDuration(options_.max_staleness)}});
    }
    failing_ = true;
    return status;
  }
  if (failing_) {
    Log(LogLevel::kInfo, options_.component, "identity's revocation feed is read again");
  }
  failing_ = false;
  absl::MutexLock lock(&mu_);
  synced_at_ = started;
  return absl::OkStatus();
}

absl::Duration SessionKeyCache::FeedAge() const {
  absl::MutexLock lock(&mu_);
  if (synced_at_ == absl::InfinitePast()) return absl::InfiniteDuration();
  return clock_->Now() - synced_at_;
}

absl::StatusOr<SessionClaims> SessionKeyCache::Verify(std::string_view token, bool allow_revoked) {
  const absl::Time now = clock_->Now();
  std::shared_ptr<const SessionTokenVerifier> verifier;
  absl::Time synced_at;
  {
    absl::MutexLock lock(&mu_);
    verifier = verifier_;
    synced_at = synced_at_;
  }
  if (verifier == nullptr) {
    return absl::UnavailableError(
        "session verification: identity's session keys not read yet; try again");
  }
  if (!allow_revoked && now - synced_at > options_.max_staleness) {
    return absl::UnavailableError(
        absl::StrCat("session verification: identity's revocation feed was last read ",
                     absl::FormatDuration(absl::Trunc(now - synced_at, absl::Milliseconds(1))),
                     " ago (limit ", absl::FormatDuration(options_.max_staleness), "); try again"));
  }
  return verifier->Verify(token, now, allow_revoked ? nullptr : &revocations_);
}

}  // namespace qsign::auth
