#include "common/grpc_request_id.h"

#include <grpcpp/server.h>
#include <grpcpp/server_context.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/call_once.h"
#include "common/request_id.h"

namespace qsign::request_id {
namespace {

// The handler's scope: set in PreSynchronousRequest, ended in PostSynchronousRequest, both on
// the handler's thread.
thread_local std::optional<ScopedRequestId> handler_scope;

// The call's id, accepted or generated, echoed in its initial metadata.
std::string AcceptFrom(grpc::ServerContextBase* context) {
  std::string_view incoming;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find(kMetadataKey); it != metadata.end()) {
    incoming = std::string_view(it->second.data(), it->second.size());
  }
  std::string id = AcceptOrGenerate(incoming);
  context->AddInitialMetadata(kMetadataKey, id);
  return id;
}

class RequestIdCallbacks final : public grpc::Server::GlobalCallbacks {
 public:
  void PreSynchronousRequest(grpc::ServerContext* context) override {
    handler_scope.emplace(AcceptFrom(context));
  }

  void PostSynchronousRequest(grpc::ServerContext* /*context*/) override { handler_scope.reset(); }
};

}  // namespace

void InstallServerHooks() {
  static absl::once_flag once;
  // gRPC keeps the object for the life of the process.
  absl::call_once(once, [] { grpc::Server::SetGlobalCallbacks(new RequestIdCallbacks()); });
}

std::string AcceptCallbackRequestId(grpc::CallbackServerContext* context) {
  return AcceptFrom(context);
}

void ForwardRequestId(grpc::ClientContext* ctx) {
  const std::string_view id = Current();
  if (!id.empty()) ctx->AddMetadata(kMetadataKey, std::string(id));
}

}  // namespace qsign::request_id
