// The sweeper: what makes revocation and expiry finish even when a peer was down. Resumes
// unfinished revoke-all jobs, destroys the keys revocations left behind, and ends the credentials
// of certificates past notAfter (the signer already refuses to sign with them).
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {
namespace {

// At most this many jobs and keys a run; the next run takes the rest.
constexpr int kBatch = 100;
// A revocation younger than this is still in the hands of the call that asked for it.
constexpr absl::Duration kRevocationGrace = absl::Seconds(10);

// The actor of what the sweeper does, in the audit records.
Caller SweeperCaller() {
  return Caller{.kind = CallerKind::kService, .id = "lifecycle-sweeper", .peer = "scheduler"};
}

}  // namespace

absl::StatusOr<SweepResult> Lifecycle::Sweep() {
  SweepResult out;
  const Caller actor = SweeperCaller();
  auto jobs = store_->ListUnfinishedRevokeAllJobs(kBatch);
  if (!jobs.ok()) return jobs.status();
  for (const RevokeAllJob& job : *jobs) {
    ++out.jobs_resumed;
    auto run = RunRevokeAllJob(job, actor);
    if (!run.ok()) return run.status();
    if (run->complete) {
      ++out.jobs_finished;
    } else {
      ++out.failures;
    }
  }

  // Revocations a failed call left between "disabled at the signer" and "marked revoked" (or
  // before the signer could disable): finished, so that no GOOD certificate keeps a dead key.
  auto revocations = store_->ListUnfinishedRevocations(Now() - kRevocationGrace, kBatch);
  if (!revocations.ok()) return revocations.status();
  for (const RevocationRequest& r : *revocations) {
    auto record = store_->GetCertificate(r.certificate_id);
    if (!record.ok()) return record.status();
    if (record->state != CertState::kIssued) {
      // Revoked meanwhile (by a retry or a revoke-all): nothing left to do.
      if (auto s = store_->FinishRevocationRequest(r.certificate_id, Now()); !s.ok()) return s;
      continue;
    }
    auto revoked = FinishRevocation(
        *record, r.reason,
        Audit(actor, "certificate.revoke", record->serial_hex,
              absl::StrCat("certificate_id=", record->certificate_id, " account=",
                           record->account_id, " reason=", Av(RevocationReasonName(r.reason)),
                           " requested_by=", Av(r.requested_by), " requested_at=",
                           TimeText(r.requested_at), " (finished by the sweeper)")));
    if (!revoked.ok()) {
      ++out.failures;
      Log(LogLevel::kWarning, "lifecycle", "sweeper: revocation unfinished; retried next run",
          {{"certificate_id", r.certificate_id}, {"status", revoked.status().ToString()}});
      continue;
    }
    ++out.revocations_finished;
  }

  const absl::Time now = Now();
  auto keys = store_->ListKeysToDestroy(now, kBatch);
  if (!keys.ok()) return keys.status();
  for (const CertRecord& c : *keys) {
    // An ISSUED certificate here is past notAfter. One never attached has no validity at the
    // signer (its credential never left PENDING), so it is ended as an abandoned one.
    const bool expired = c.state == CertState::kIssued;
    const KeyEnd why = expired && c.attached ? KeyEnd::kExpired : KeyEnd::kRevoked;
    db::AuditEvent audit =
        expired ? Audit(actor, "certificate.expire", c.serial_hex,
                        absl::StrCat("certificate_id=", c.certificate_id, " account=", c.account_id,
                                     " not_after=", TimeText(c.not_after), " key destroyed"))
                : Audit(actor, "certificate.key_destroyed", c.serial_hex,
                        absl::StrCat("certificate_id=", c.certificate_id, " state=",
                                     Av(CertStateName(c.state)), " (left by an earlier call)"));
    if (auto s = DestroyKey(c, why, std::move(audit)); !s.ok()) {
      ++out.failures;
      Log(LogLevel::kWarning, "lifecycle", "sweeper: key destruction failed; retried next run",
          {{"certificate_id", c.certificate_id}, {"status", s.ToString()}});
      continue;
    }
    ++(expired ? out.keys_expired : out.keys_destroyed);
  }
  // What operators watch: jobs that keep failing, keys that cannot be destroyed.
  metrics::Registry& metrics = metrics::Registry::Global();
  metrics.SetGauge("qsign_lifecycle_revoke_all_jobs_unfinished",
                   "Revoke-all jobs the last sweep left unfinished (a peer failed; retried).", {},
                   out.jobs_resumed - out.jobs_finished);
  if (out.keys_expired > 0) {
    metrics.AddCounter("qsign_lifecycle_expired_keys_destroyed_total",
                       "Keys of certificates past notAfter destroyed by the sweeper.", {},
                       out.keys_expired);
  }
  if (out.failures > 0) {
    metrics.AddCounter("qsign_lifecycle_sweep_failures_total",
                       "Sweeper steps that failed (revoke-all jobs, key destruction); retried.", {},
                       out.failures);
  }
  return out;
}

}  // namespace qsign::lifecycle
