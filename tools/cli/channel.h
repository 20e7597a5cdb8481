// The qsign CLI's channel to a qsign server: mutual TLS with the client certificate files named
// by --tls_ca/--tls_cert/--tls_key (or $QSIGN_TLS_CA/CERT/KEY), through the same common/tls
// credentials the services use for their peers; plaintext without them (a development server
// with insecure_dev only).
#ifndef QSIGN_TOOLS_CLI_CHANNEL_H_
#define QSIGN_TOOLS_CLI_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "tools/cli/output.h"

namespace qsign::cli {

struct TlsFiles {
  std::string ca;    // The CA that issued the server's certificate (and ours).
  std::string cert;  // Our client certificate chain.
  std::string key;   // Its private key.
};

// Sets *channel to `server`; a usage failure when only some of the files are named or one
// cannot be read.
Result Connect(const std::string& server, const TlsFiles& tls,
               std::shared_ptr<grpc::Channel>* channel);

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_CHANNEL_H_
