// Request ids at the gRPC edges (common/request_id.h). Server side: every call of a synchronous
// service takes its id from the "x-request-id" metadata when well-formed (a fresh one otherwise),
// echoes it in the initial metadata, and is the thread's current id while its handler runs.
// Client side: calls made while handling a request forward its id.
#ifndef QSIGN_COMMON_GRPC_REQUEST_ID_H_
#define QSIGN_COMMON_GRPC_REQUEST_ID_H_

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include <string>

namespace qsign::request_id {

// Installs the server-side hooks, once per process; later calls do nothing. Must run before the
// process builds its first grpc::Server (GrpcServer::Start calls it). The hooks are gRPC's
// Server::GlobalCallbacks, which the synchronous server runs on the handler's thread right
// before and after the handler; interceptor hooks are not used because when they run relative
// to the handler is an implementation detail.
void InstallServerHooks();

// For a handler of gRPC's callback API, which those hooks do not see: the call's id (from the
// metadata when well-formed, else fresh), added to its initial metadata. The handler makes it
// current (ScopedRequestId) on each thread that works on the call.
std::string AcceptCallbackRequestId(grpc::CallbackServerContext* context);

// Adds the current id, if there is one, to an outgoing call's metadata. Call it wherever a
// ClientContext is prepared for a call to another qsign service.
void ForwardRequestId(grpc::ClientContext* ctx);

}  // namespace qsign::request_id

#endif  // QSIGN_COMMON_GRPC_REQUEST_ID_H_
