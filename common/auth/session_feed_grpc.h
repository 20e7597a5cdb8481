// SessionFeed over identity's gRPC API (Identity.GetSessionKeys and ListSessionRevocations),
// authenticated as the calling service (`authorization: Service <client id>.<secret>`).
#ifndef QSIGN_COMMON_AUTH_SESSION_FEED_GRPC_H_
#define QSIGN_COMMON_AUTH_SESSION_FEED_GRPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string_view>

#include "absl/time/time.h"
#include "common/auth/session_key_cache.h"
#include "common/daemon/deferred_channel.h"
#include "common/secret.h"
#include "qsign/v1/identity.grpc.pb.h"

namespace qsign::auth {

class GrpcSessionFeed final : public SessionFeed {
 public:
  // An empty client_id sends no authorization. Each call waits at most `timeout`; before the
  // channel is set every call is UNAVAILABLE.
  GrpcSessionFeed(std::shared_ptr<const daemon::DeferredChannel> channel,
                  std::string_view client_id, const SecretString& secret,
                  absl::Duration timeout = absl::Seconds(2));

  absl::StatusOr<std::vector<Key>> GetSessionKeys() override;
  absl::StatusOr<Page> ListSessionRevocations(uint64_t after_sequence) override;

 private:
  void Prepare(grpc::ClientContext* ctx) const;

  daemon::DeferredStub<qsign::v1::Identity> stub_;
  SecretString authorization_;
  absl::Duration timeout_;
};

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_SESSION_FEED_GRPC_H_
