#include "services/tsa/lifecycle_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/strings.h"

namespace qsign::tsa {

namespace pb = ::qsign::v1;

GrpcLifecycleClient::GrpcLifecycleClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                                         std::string_view client_id, const SecretString& secret,
                                         absl::Duration timeout)
    : stub_(std::move(channel)),
      authorization_(secret.empty() ? SecretString()
                                    : SecretString(absl::StrCat("Service ", Av(client_id), ".",
                                                                Av(secret.value())))),
      timeout_(timeout) {}

absl::StatusOr<TsaCertificate> GrpcLifecycleClient::IssueTsaCertificate(std::string_view public_key,
                                                                        std::string_view name) {
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  pb::IssueTsaCertificateRequest req;
  req.set_public_key(std::string(public_key));
  req.set_name(std::string(name));
  pb::Certificate resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
  if (!authorization_.empty()) {
    ctx.AddMetadata("authorization", std::string(authorization_.value()));
  }
  request_id::ForwardRequestId(&ctx);
  grpc::Status s = (*stub)->IssueTsaCertificate(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  TsaCertificate out{.serial_hex = resp.serial_hex(),
                     .certificate_der = resp.certificate_der(),
                     .chain_der = {resp.issuer_chain_der().begin(), resp.issuer_chain_der().end()},
                     .not_after = FromProto(resp.not_after())};
  return out;
}

}  // namespace qsign::tsa
