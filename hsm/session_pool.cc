#include "hsm/session_pool.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "hsm/pkcs11_module.h"
#include "hsm/pkcs11_status.h"

namespace qsign::hsm {

bool IsSessionLost(const absl::Status& status) {
  std::optional<CK_RV> rv = CkrFromStatus(status);
  if (!rv.has_value()) return false;
  switch (*rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_REMOVED:
    case CKR_USER_NOT_LOGGED_IN:
      return true;
    default:
      return false;
  }
}

SessionPool::SessionPool(const CK_FUNCTION_LIST* fns, CK_SLOT_ID slot,
                         std::string token_description, const SecretString* pin, int size,
                         std::string_view token_label)
    : fns_(fns),
      slot_(slot),
      token_description_(std::move(token_description)),
      pin_(pin),
      size_gauge_(metrics::Registry::Global().GetGauge(
          "qsign_hsm_session_pool_size", "PKCS#11 sessions kept open by the HSM session pool.",
          {{"token", std::string(token_label)}})),
      in_use_gauge_(metrics::Registry::Global().GetGauge(
          "qsign_hsm_sessions_in_use", "PKCS#11 sessions of the pool leased to an operation now.",
          {{"token", std::string(token_label)}})),
      reopened_counter_(metrics::Registry::Global().GetCounter(
          "qsign_hsm_sessions_reopened_total",
          "PKCS#11 sessions replaced after the module reported them lost.",
          {{"token", std::string(token_label)}})),
      slots_(static_cast<size_t>(size)),
      free_slots_(static_cast<size_t>(size)) {
  size_gauge_->Add(size);
}

absl::StatusOr<std::unique_ptr<SessionPool>> SessionPool::New(const CK_FUNCTION_LIST* fns,
                                                              CK_SLOT_ID slot,
                                                              std::string token_description,
                                                              const SecretString* pin, int size,
                                                              std::string_view token_label) {
  if (size < 1) return absl::InvalidArgumentError("session pool size must be at least 1");
  std::unique_ptr<SessionPool> pool(
      new SessionPool(fns, slot, std::move(token_description), pin, size, token_label));
  // Open every session now, so a bad PIN or a full token shows at start-up.
  for (size_t i = 0; i < static_cast<size_t>(size); ++i) {
    absl::StatusOr<CK_SESSION_HANDLE> session = pool->OpenAndLogin();
    if (!session.ok()) return session.status();
    pool->Install(i, *session);
  }
  return pool;
}

SessionPool::~SessionPool() {
  absl::MutexLock lock(&mu_);
  size_gauge_->Add(-static_cast<double>(slots_.size()));
  for (Slot& slot : slots_) {
    if (slot.handle != CK_INVALID_HANDLE) fns_->C_CloseSession(slot.handle);
    slot.handle = CK_INVALID_HANDLE;
  }
}

int64_t SessionPool::sessions_reopened() const {
  absl::MutexLock lock(&mu_);
  return sessions_reopened_;
}

absl::StatusOr<CK_SESSION_HANDLE> SessionPool::OpenAndLogin() {
  absl::StatusOr<CK_SESSION_HANDLE> session = OpenSession(*fns_, slot_);
  if (!session.ok()) {
    return AnnotateStatus(session.status(),
                          absl::StrCat("opening a session on ", token_description_));
  }
  // Login state belongs to the application, not the session: this is a no-op
  // (CKR_USER_ALREADY_LOGGED_IN) unless every other session is gone too.
  absl::Status status = LoginUser(*fns_, *session, pin_->value());
  if (!status.ok()) {
    fns_->C_CloseSession(*session);
    return AnnotateStatus(status, absl::StrCat("logging in to ", token_description_));
  }
  return session;
}

size_t SessionPool::Acquire(CK_SESSION_HANDLE* handle) {
  absl::MutexLock lock(&mu_);
  while (free_slots_ == 0) slot_freed_.Wait(&mu_);
  // Prefer a slot whose session is open; one that needs opening is the fallback.
  size_t chosen = slots_.size();
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].leased) continue;
    if (slots_[i].handle != CK_INVALID_HANDLE) {
      chosen = i;
      break;
    }
    if (chosen == slots_.size()) chosen = i;
  }
  slots_[chosen].leased = true;
  --free_slots_;
  in_use_gauge_->Add(1);
  *handle = slots_[chosen].handle;
  return chosen;
}

void SessionPool::Release(size_t index) {
  absl::MutexLock lock(&mu_);
  slots_[index].leased = false;
  ++free_slots_;
  in_use_gauge_->Add(-1);
  slot_freed_.Signal();
}

void SessionPool::Install(size_t index, CK_SESSION_HANDLE fresh) {
  absl::MutexLock lock(&mu_);
  // A module may hand out the number of a session it has closed behind our back (after
  // C_CloseAllSessions or a device reset). Whoever else still holds that number holds a
  // dead session that now aliases this one: forget it there, so it is re-opened, not shared.
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (i != index && slots_[i].handle == fresh) slots_[i].handle = CK_INVALID_HANDLE;
  }
  slots_[index].handle = fresh;
}

void SessionPool::Discard(size_t index, CK_SESSION_HANDLE broken) {
  bool still_ours;
  {
    absl::MutexLock lock(&mu_);
    still_ours = slots_[index].handle == broken;
    if (still_ours) slots_[index].handle = CK_INVALID_HANDLE;
  }
  // Its result does not matter: the session is unusable either way. Skipped when the number
  // has since been handed to another slot (see Install).
  if (still_ours) fns_->C_CloseSession(broken);
}

absl::StatusOr<CK_SESSION_HANDLE> SessionPool::Reopen(size_t index, CK_SESSION_HANDLE broken) {
  {
    absl::MutexLock lock(&mu_);
    ++sessions_reopened_;
  }
  reopened_counter_->Increment();
  Discard(index, broken);
  absl::StatusOr<CK_SESSION_HANDLE> fresh = OpenAndLogin();
  if (!fresh.ok()) return fresh.status();
  Install(index, *fresh);
  return fresh;
}

absl::Status SessionPool::Run(absl::FunctionRef<absl::Status(CK_SESSION_HANDLE)> fn) {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  const size_t index = Acquire(&session);
  absl::Cleanup release = [this, index] { Release(index); };
  if (session == CK_INVALID_HANDLE) {
    absl::StatusOr<CK_SESSION_HANDLE> fresh = OpenAndLogin();
    if (!fresh.ok()) return fresh.status();
    Install(index, *fresh);
    session = *fresh;
  }
  absl::Status status = fn(session);
  if (!IsSessionLost(status)) return status;
  absl::StatusOr<CK_SESSION_HANDLE> fresh = Reopen(index, session);
  if (!fresh.ok()) {
    return AnnotateStatus(fresh.status(),
                          absl::StrCat("replacing a session lost with \"", status.message(), "\""));
  }
  status = fn(*fresh);
  // Lost again: do not hand this session to the next caller; it is re-opened on next use.
  if (IsSessionLost(status)) Discard(index, *fresh);
  return status;
}

}  // namespace qsign::hsm
