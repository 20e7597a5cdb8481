// A fixed set of worker threads that run posted tasks, at once or at a given time. Waits that
// must not hold a thread each (gRPC callback handlers waiting on a notification or a timer) post
// their next step here, and so do the short blocking steps (a database read) that must not run on
// gRPC's own callback threads.
#ifndef QSIGN_COMMON_TASK_RUNNER_H_
#define QSIGN_COMMON_TASK_RUNNER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign {

class TaskRunner {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // `threads` workers (at least 1), started at once, named `name` (at most 15 characters: what
  // top -H, perf and /proc/<pid>/task/*/comm show).
  explicit TaskRunner(int threads, std::string name = "task-runner");
  // Joins the workers after the task each is running; tasks not yet run are destroyed unrun.
  ~TaskRunner();
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // Runs `task` on a worker as soon as one is free (in posting order). The request id current on
  // the posting thread (common/request_id.h) is current while the task runs.
  void Post(Task task);
  // A task posted with PostAt, for Cancel.
  struct Timer {
    absl::Time when;
    uint64_t seq = 0;
  };
  // Runs `task` on a worker once real time `when` has come (at once when it has); likewise.
  Timer PostAt(absl::Time when, Task task);
  // Drops a task posted with PostAt that has not started (destroyed unrun, after this returns
  // true); false when it has started or was dropped before. A wait that ends before its timer
  // cancels it, so that the runner neither holds nor wakes for it.
  bool Cancel(const Timer& timer);

  // Tasks posted and not yet started, timed ones included (for tests and metrics).
  size_t queued() const;

 private:
  // A task and the request id it was posted under.
  struct Entry {
    std::string request_id;
    Task task;
  };
  void Work();

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Entry> ready_ ABSL_GUARDED_BY(mu_);
  // By due time, then posting order.
  std::map<std::pair<absl::Time, uint64_t>, Entry> timed_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // One idle worker (the timer waiter) sleeps on timer_cv_ until the earliest timed task; the
  // others on cv_ until a Post, which wakes one of them first: a due timer or a new task wakes
  // one worker, not all of them.
  absl::CondVar timer_cv_;
  bool timer_waiter_ ABSL_GUARDED_BY(mu_) = false;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;     // Workers waiting on cv_,
  int wakeups_ ABSL_GUARDED_BY(mu_) = 0;  // of which signalled and not yet awake.
  std::vector<std::thread> threads_;
};

}  // namespace qsign

#endif  // QSIGN_COMMON_TASK_RUNNER_H_
