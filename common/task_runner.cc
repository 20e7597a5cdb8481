#include "common/task_runner.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "common/request_id.h"

namespace qsign {

TaskRunner::TaskRunner(int threads, std::string name) {
  const int n = std::max(1, threads);
  name.resize(std::min<size_t>(name.size(), 15));  // The kernel's limit.
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this, name] {
      pthread_setname_np(pthread_self(), name.c_str());
      Work();
    });
  }
}

TaskRunner::~TaskRunner() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
    timer_cv_.SignalAll();
  }
  for (std::thread& t : threads_) t.join();
  // Destroyed here, outside the lock: a task's captures may post (and are dropped) in turn.
  std::deque<Entry> ready;
  std::map<std::pair<absl::Time, uint64_t>, Entry> timed;
  {
    absl::MutexLock lock(&mu_);
    ready.swap(ready_);
    timed.swap(timed_);
  }
}

void TaskRunner::Post(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  ready_.push_back({std::string(request_id::Current()), std::move(task)});
  // An idle worker if there is one, else the timer waiter (if every worker is busy, the first
  // to finish takes it).
  if (idle_ > wakeups_) {
    ++wakeups_;
    cv_.Signal();
  } else {
    timer_cv_.Signal();
  }
}

TaskRunner::Timer TaskRunner::PostAt(absl::Time when, Task task) {
  absl::MutexLock lock(&mu_);
  const Timer timer{.when = when, .seq = next_seq_++};
  if (stopping_) return timer;
  auto it = timed_
                .emplace(std::make_pair(when, timer.seq),
                         Entry{std::string(request_id::Current()), std::move(task)})
                .first;
  // The worker asleep until a later time must recompute its deadline; with none, an idle one
  // becomes the timer waiter.
  if (it == timed_.begin()) {
    if (timer_waiter_) {
      timer_cv_.Signal();
    } else if (idle_ > wakeups_) {
      ++wakeups_;
      cv_.Signal();
    }
  }
  return timer;
}

bool TaskRunner::Cancel(const Timer& timer) {
  Entry dropped;  // Destroyed outside the lock: its captures may post in turn.
  absl::MutexLock lock(&mu_);
  auto it = timed_.find(std::make_pair(timer.when, timer.seq));
  if (it == timed_.end()) return false;
  dropped = std::move(it->second);
  timed_.erase(it);
  return true;
}

size_t TaskRunner::queued() const {
  absl::MutexLock lock(&mu_);
  return ready_.size() + timed_.size();
}

void TaskRunner::Work() {
  while (true) {
    Entry entry;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        if (!timed_.empty() && timed_.begin()->first.first <= absl::Now()) {
          entry = std::move(timed_.begin()->second);
          timed_.erase(timed_.begin());
          break;
        }
        if (!ready_.empty()) {
          entry = std::move(ready_.front());
          ready_.pop_front();
          break;
        }
        // Woken by a new task, a new earliest timed one, or (the one timer waiter) when the
        // earliest is due.
        if (!timed_.empty() && !timer_waiter_) {
          timer_waiter_ = true;
          timer_cv_.WaitWithDeadline(&mu_, timed_.begin()->first.first);
          timer_waiter_ = false;
        } else {
          ++idle_;
          cv_.Wait(&mu_);
          --idle_;
          if (wakeups_ > 0) --wakeups_;
        }
      }
      // Leaving with timed tasks pending and nobody waiting for them: an idle worker takes over.
      if (!timed_.empty() && !timer_waiter_ && idle_ > wakeups_) {
        ++wakeups_;
        cv_.Signal();
      }
    }
    if (entry.request_id.empty()) {
      std::move(entry.task)();
    } else {
      request_id::ScopedRequestId scope(std::move(entry.request_id));
      std::move(entry.task)();
    }
  }
}

}  // namespace qsign
