#include "tests/faults/issuance_load.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace qsign::testing {
namespace {

namespace pb = ::qsign::v1;

void Bearer(grpc::ClientContext& ctx, const std::string& token) {
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
}

}  // namespace

grpc::Status IssuanceLoad::Issue(const std::string& token, const std::string& request_id,
                                 pb::Certificate* out) const {
  pb::IssueRequest req;
  req.set_client_request_id(request_id);
  grpc::ClientContext ctx;
  Bearer(ctx, token);
  return pb::Lifecycle::NewStub(channel_())->Issue(&ctx, req, out);
}

grpc::Status IssuanceLoad::Revoke(const std::string& token,
                                  const std::string& certificate_id) const {
  pb::RevokeRequest req;
  req.set_certificate_id(certificate_id);
  grpc::ClientContext ctx;
  Bearer(ctx, token);
  pb::Certificate out;
  return pb::Lifecycle::NewStub(channel_())->Revoke(&ctx, req, &out);
}

grpc::Status IssuanceLoad::AcceptContract(const std::string& token) const {
  pb::Contract contract;
  {
    grpc::ClientContext ctx;
    grpc::Status s =
        pb::Lifecycle::NewStub(channel_())->GetContract(&ctx, pb::GetContractRequest(), &contract);
    if (!s.ok()) return s;
  }
  pb::AcceptContractRequest req;
  req.set_version(contract.version());
  req.set_text_sha256(contract.text_sha256());
  grpc::ClientContext ctx;
  Bearer(ctx, token);
  pb::ContractAcceptance out;
  return pb::Lifecycle::NewStub(channel_())->AcceptContract(&ctx, req, &out);
}

void IssuanceLoad::Start(std::vector<std::string> tokens) {
  tokens_ = std::move(tokens);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    threads_.emplace_back([this, i] { Citizen(static_cast<int>(i), tokens_[i]); });
  }
}

void IssuanceLoad::Stop() {
  stop_.store(true);
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

// Issue, retried with the same client_request_id until acknowledged, then Revoke, retried until
// acknowledged (or answered "already revoked": an earlier try got through); again with the next
// request id, until Stop.
void IssuanceLoad::Citizen(int person, const std::string& token) {
  for (int k = 0; !stop_.load(); ++k) {
    Issuance* mine;
    {
      absl::MutexLock lock(&mu_);
      issuances_.push_back(std::make_unique<Issuance>(
          Issuance{.person = person, .client_request_id = absl::StrCat("p", person, "-", k)}));
      mine = issuances_.back().get();
    }
    while (!stop_.load()) {
      pb::Certificate cert;
      grpc::Status s = Issue(token, mine->client_request_id, &cert);
      if (s.ok()) {
        absl::MutexLock lock(&mu_);
        mine->certificate_id = cert.certificate_id();
        ++issues_acknowledged_;
        break;
      }
      ++failed_calls_;
      absl::SleepFor(absl::Milliseconds(50));
    }
    if (mine->certificate_id.empty()) return;
    while (!stop_.load()) {
      {
        absl::MutexLock lock(&mu_);
        mine->revoke_sent = true;
      }
      grpc::Status s = Revoke(token, mine->certificate_id);
      if (s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        absl::MutexLock lock(&mu_);
        mine->revoke_acknowledged = true;
        break;
      }
      ++failed_calls_;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
}

int IssuanceLoad::IssuesAcknowledged() {
  absl::MutexLock lock(&mu_);
  return issues_acknowledged_;
}

bool IssuanceLoad::AwaitIssues(int n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (IssuesAcknowledged() < n) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

IssuanceLoad::Checked IssuanceLoad::Check(const std::set<std::string>& issued,
                                          const std::set<std::string>& active) {
  std::vector<Issuance> seen;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& i : issuances_) seen.push_back(*i);
  }
  Checked c;
  for (const Issuance& i : seen) {
    if (i.certificate_id.empty()) continue;
    ++c.acknowledged;
    const bool is_issued = issued.contains(i.certificate_id);
    if (i.revoke_acknowledged) {
      ++c.revokes_acknowledged;
      if (is_issued || active.contains(i.certificate_id)) {
        ++c.lost;
        ADD_FAILURE() << "acknowledged revocation not recorded: " << i.certificate_id;
      }
    } else if (!i.revoke_sent && !is_issued) {
      ++c.lost;
      ADD_FAILURE() << "acknowledged issuance not ISSUED: " << i.certificate_id;
    }
    pb::Certificate again;
    grpc::Status s;
    // UNAVAILABLE while a new process has not yet read identity's session keys: retried.
    for (int attempt = 0; attempt < 300; ++attempt) {
      s = Issue(tokens_[i.person], i.client_request_id, &again);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (s.ok() && again.certificate_id() == i.certificate_id) {
      ++c.same_on_retry;
    } else {
      ADD_FAILURE() << i.client_request_id << " again: " << s.error_code() << " "
                    << s.error_message() << " " << again.certificate_id() << " vs "
                    << i.certificate_id;
    }
  }
  EXPECT_EQ(c.same_on_retry, c.acknowledged);
  return c;
}

}  // namespace qsign::testing
