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
  cv_.Signal();
}

void TaskRunner::PostAt(absl::Time when, Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  auto it = timed_
                .emplace(std::make_pair(when, next_seq_++),
                         Entry{std::string(request_id::Current()), std::move(task)})
                .first;
  // A worker asleep until a later time must recompute its deadline.
  if (it == timed_.begin()) cv_.SignalAll();
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
        // Woken by a new task, a new earliest timed one, or when the earliest is due.
        cv_.WaitWithDeadline(&mu_,
                             timed_.empty() ? absl::InfiniteFuture() : timed_.begin()->first.first);
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
