// Mutual TLS for every qsign gRPC listener and channel, and the per-RPC-group client allow-lists.
//
// Security contract: a server built with ServerCredentialsFromConfig completes a handshake only
// with a client whose certificate chains to tls.client_ca_file, and runs a handler only when one
// of that certificate's subjectAltName DNS names is allowed, by the config's `allow` entries, to
// call the method's RPC group. Every other call ends with PERMISSION_DENIED before any handler
// runs. grpc.health.v1 and server reflection are open to every verified client.
//
// How a service main wires it (config is a qsign::config::v1::ServerConfig):
//
//   absl::StatusOr<std::shared_ptr<const tls::AccessPolicy>> policy =
//       tls::AccessPolicy::New(config.allow());               // "allow[2].group: unknown ..."
//   absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server_creds =
//       tls::ServerCredentialsFromConfig(config.tls(), *policy);  // "tls.key_file: ..."
//   GrpcServerOptions options;
//   options.credentials = *server_creds;      // nullptr (the default): plaintext, insecure_dev
//   ... GrpcServer::Start(options, services);
//
//   // Calls to peers present this process's certificate as the client certificate:
//   absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel_creds =
//       tls::ChannelCredentialsFromConfig(config.tls());
//   grpc::CreateChannel(config.peers().signer(), *channel_creds);
//
// /metrics over HTTPS: metrics::MetricsHttpServer::Start(listen, registry,
// {tls.cert_file(), tls.key_file(), tls.client_ca_file()}) (common/metrics_http.h).
#ifndef QSIGN_COMMON_TLS_H_
#define QSIGN_COMMON_TLS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::tls {

// A named set of gRPC methods that one allow-list entry opens, e.g. "signer.admin".
struct RpcGroup {
  std::string name;
  // Full method paths, "/qsign.v1.Signer/CreateKey".
  std::vector<std::string> methods;
};

// The groups the protos declare: option (qsign.v1.rpc_group) on every qsign.v1 method (tls_test
// checks each has one, and that docs/operations.md "TLS and allow-lists" lists the same groups).
const std::vector<RpcGroup>& QsignRpcGroups();

// True for grpc.health.v1 and server reflection, which every verified client may call.
bool IsAlwaysAllowed(std::string_view method_path);

// Which client identities may call which methods. Immutable once built; safe to share.
class AccessPolicy {
 public:
  // Over QsignRpcGroups().
  static absl::StatusOr<std::shared_ptr<const AccessPolicy>> New(
      const google::protobuf::RepeatedPtrField<config::v1::Allow>& allow);
  // Over another group table (tests). Errors name the field: "allow[2].group: unknown RPC
  // group \"x\"", "allow[0].clients: empty".
  static absl::StatusOr<std::shared_ptr<const AccessPolicy>> New(
      const std::vector<RpcGroup>& groups,
      const google::protobuf::RepeatedPtrField<config::v1::Allow>& allow);

  // OK when the method is always allowed, or when one of `peer_identities` (the client
  // certificate's DNS subjectAltNames) is listed for the method's group. Otherwise
  // PERMISSION_DENIED: `client "gateway" may not call /qsign.v1.Signer/CreateKey (RPC group
  // signer.admin)`; a method in no group is refused too.
  absl::Status Check(std::string_view method_path,
                     const std::vector<std::string>& peer_identities) const;

  // The group of a method; "" when it is in none.
  std::string_view GroupOf(std::string_view method_path) const;

 private:
  AccessPolicy() = default;
  std::map<std::string, std::string, std::less<>> group_of_method_;
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> clients_of_group_;
};

// Credentials of a listener that requires and verifies a client certificate chaining to
// tls.client_ca_file, presents tls.cert_file, and enforces `policy` on every call (a refusal is
// logged as one line: client, method, group). Reads and checks the three files now; errors
// name the field: "tls.key_file: cannot read secret file /x: No such file or directory".
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromConfig(
    const config::v1::Tls& tls, std::shared_ptr<const AccessPolicy> policy);

// Credentials of a channel to a peer: tls.cert_file/key_file as the client certificate, the
// peer's certificate verified against tls.client_ca_file and the target's host name.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromConfig(
    const config::v1::Tls& tls);

// This process's identity: the first DNS subjectAltName of the leaf in tls.cert_file, which its
// peers (and its own listener, for in-process calls) see as the client.
absl::StatusOr<std::string> OwnIdentity(const config::v1::Tls& tls);

// The DNS subjectAltNames of the verified client certificate of a call (its identities).
std::vector<std::string> PeerIdentities(const grpc::AuthContext& context);

}  // namespace qsign::tls

#endif  // QSIGN_COMMON_TLS_H_
