// ThreadSanitizer cannot see the locks of Debian's abseil (built without TSan), so every access
// guarded by an absl::Mutex would be reported as a race. scripts/test --sanitize=thread preloads
// this library: it wraps the Mutex, CondVar and Notification entry points, calls the real ones
// (dlsym RTLD_NEXT) and tells TSan about the happens-before edges (__tsan_acquire/release on the
// mutex's address). Built without -fsanitize=thread; the TSan hooks resolve in the test binary
// and are weak, so preloaded into a child that is not a TSan binary (postgres, softhsm2-util)
// nothing happens.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace {

void Acquire(const void* p) {
  if (__tsan_acquire != nullptr) __tsan_acquire(const_cast<void*>(p));
}
void Release(const void* p) {
  if (__tsan_release != nullptr) __tsan_release(const_cast<void*>(p));
}

template <typename F>
F Real(const char* mangled) {
  void* f = dlsym(RTLD_NEXT, mangled);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl: %s not found\n", mangled);
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

#define REAL(type, mangled)                           \
  static const auto real = Real<type>(mangled)

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using MuFn = void (*)(Mutex*);
using MuBoolFn = bool (*)(Mutex*);
using MuCondFn = void (*)(Mutex*, const Condition&);
using MuCondDurFn = bool (*)(Mutex*, const Condition&, Duration);
using MuCondTimeFn = bool (*)(Mutex*, const Condition&, Time);

void Mutex::Lock() {
  REAL(MuFn, "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  Acquire(this);
}
void Mutex::Unlock() {
  REAL(MuFn, "_ZN4absl7debian35Mutex6UnlockEv");
  Release(this);
  real(this);
}
void Mutex::ReaderLock() {
  REAL(MuFn, "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}
void Mutex::ReaderUnlock() {
  REAL(MuFn, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}
bool Mutex::TryLock() {
  REAL(MuBoolFn, "_ZN4absl7debian35Mutex7TryLockEv");
  const bool ok = real(this);
  if (ok) Acquire(this);
  return ok;
}
bool Mutex::ReaderTryLock() {
  REAL(MuBoolFn, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool ok = real(this);
  if (ok) Acquire(this);
  return ok;
}
void Mutex::LockWhen(const Condition& cond) {
  REAL(MuCondFn, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  real(this, cond);
  Acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(MuCondFn, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  real(this, cond);
  Acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(MuCondDurFn, "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool r = real(this, cond, timeout);
  Acquire(this);
  return r;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(MuCondTimeFn, "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool r = real(this, cond, deadline);
  Acquire(this);
  return r;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(MuCondDurFn,
       "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool r = real(this, cond, timeout);
  Acquire(this);
  return r;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(MuCondTimeFn,
       "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool r = real(this, cond, deadline);
  Acquire(this);
  return r;
}
// Await releases and re-acquires the mutex inside abseil: publish before, acquire after.
void Mutex::Await(const Condition& cond) {
  REAL(MuCondFn, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Release(this);
  real(this, cond);
  Acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(MuCondDurFn, "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Release(this);
  const bool r = real(this, cond, timeout);
  Acquire(this);
  return r;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(MuCondTimeFn, "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Release(this);
  const bool r = real(this, cond, deadline);
  Acquire(this);
  return r;
}

void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration),
       "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool r = real(this, mu, timeout);
  Acquire(mu);
  return r;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time),
       "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool r = real(this, mu, deadline);
  Acquire(mu);
  return r;
}

void Notification::Notify() {
  REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  Release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*), "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Acquire(this);
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration),
       "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool r = real(this, timeout);
  if (r) Acquire(this);
  return r;
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(bool (*)(const Notification*, Time),
       "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool r = real(this, deadline);
  if (r) Acquire(this);
  return r;
}

ABSL_NAMESPACE_END
}  // namespace absl
