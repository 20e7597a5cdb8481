#include "tools/cli/channel.h"

#include "absl/strings/str_cat.h"
#include "common/tls.h"
#include "qsign/config/v1/config.pb.h"

namespace qsign::cli {

Result Connect(const std::string& server, const TlsFiles& files,
               std::shared_ptr<grpc::Channel>* channel) {
  if (files.ca.empty() && files.cert.empty() && files.key.empty()) {
    *channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
    return std::nullopt;
  }
  if (files.ca.empty() || files.cert.empty() || files.key.empty()) {
    return Usage("--tls_ca, --tls_cert and --tls_key go together");
  }
  config::v1::Tls tls;
  tls.set_client_ca_file(files.ca);
  tls.set_cert_file(files.cert);
  tls.set_key_file(files.key);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tls::ChannelCredentialsFromConfig(tls);
  if (!credentials.ok()) {
    // The message names the config field: tls.client_ca_file is --tls_ca, tls.cert_file
    // --tls_cert, tls.key_file --tls_key.
    return Failure{kUsage, absl::StrCat("mutual TLS (--tls_ca, --tls_cert, --tls_key): ",
                                        credentials.status().message())};
  }
  *channel = grpc::CreateChannel(server, *credentials);
  return std::nullopt;
}

}  // namespace qsign::cli
