#include "common/auth/session_feed_grpc.h"

#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/strings.h"

namespace qsign::auth {

namespace pb = ::qsign::v1;

GrpcSessionFeed::GrpcSessionFeed(std::shared_ptr<const daemon::DeferredChannel> channel,
                                 std::string_view client_id, const SecretString& secret,
                                 absl::Duration timeout)
    : stub_(std::move(channel)),
      authorization_(client_id.empty() ? SecretString()
                                       : SecretString(absl::StrCat("Service ", Av(client_id), ".",
                                                                   Av(secret.value())))),
      timeout_(timeout) {}

void GrpcSessionFeed::Prepare(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
  if (!authorization_.empty()) {
    ctx->AddMetadata("authorization", std::string(authorization_.value()));
  }
}

absl::StatusOr<std::vector<SessionFeed::Key>> GrpcSessionFeed::GetSessionKeys() {
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  pb::GetSessionKeysResponse resp;
  grpc::Status s = (*stub)->GetSessionKeys(&ctx, pb::GetSessionKeysRequest(), &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  std::vector<Key> keys;
  for (const auto& k : resp.keys()) {
    keys.push_back({.key_id = k.key_id(), .public_key_spki = k.public_key_spki()});
  }
  return keys;
}

absl::StatusOr<SessionFeed::Page> GrpcSessionFeed::ListSessionRevocations(uint64_t after_sequence) {
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  pb::ListSessionRevocationsRequest req;
  req.set_after_sequence(after_sequence);
  pb::ListSessionRevocationsResponse resp;
  grpc::Status s = (*stub)->ListSessionRevocations(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  Page page;
  page.last_sequence = resp.last_sequence();
  for (const auto& r : resp.revocations()) {
    page.revocations.push_back({.sequence = r.sequence(),
                                .session_id = r.session_id(),
                                .account_id = r.account_id(),
                                .revoked_at = FromProto(r.revoked_at()),
                                .keep_until = FromProto(r.keep_until())});
  }
  return page;
}

}  // namespace qsign::auth
