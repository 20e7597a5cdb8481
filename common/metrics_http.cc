#include "common/metrics_http.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secret.h"

namespace qsign::metrics {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// Server certificate, key and (optionally) client verification of the /metrics listener.
absl::Status ConfigureTls(SSL_CTX* ctx, const MetricsTlsFiles& tls) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (tls.cert_file.empty()) return absl::InvalidArgumentError("tls.cert_file: required");
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.cert_file: ", tls.cert_file, ": cannot load a PEM certificate chain"));
  }
  if (tls.key_file.empty()) return absl::InvalidArgumentError("tls.key_file: required");
  absl::StatusOr<SecretString> key = ReadSecretFile(tls.key_file);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("tls.key_file: ", key.status().message()));
  }
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(key->value().data(), static_cast<int>(key->value().size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      bio == nullptr ? nullptr
                     : PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")));
  if (pkey == nullptr || SSL_CTX_use_PrivateKey(ctx, pkey.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.key_file: ", tls.key_file, ": not an unencrypted PEM key of tls.cert_file"));
  }
  if (!tls.client_ca_file.empty()) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return absl::InvalidArgumentError(absl::StrCat("tls.client_ca_file: ", tls.client_ca_file,
                                                     ": cannot load PEM CA certificates"));
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership of names
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, Registry* registry) {
  return Serve(listen, registry, std::make_unique<httplib::Server>());
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, Registry* registry, const MetricsTlsFiles& tls) {
  absl::Status configured = absl::InternalError("tls: TLS context not created");
  auto server = std::make_unique<httplib::SSLServer>([&configured, &tls](SSL_CTX& ctx) {
    configured = ConfigureTls(&ctx, tls);
    return configured.ok();
  });
  if (!configured.ok()) return configured;
  if (!server->is_valid()) return absl::InternalError("tls: cannot create the TLS context");
  return Serve(listen, registry, std::move(server));
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Serve(
    const std::string& listen, Registry* registry, std::unique_ptr<httplib::Server> server) {
  size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: '", listen, "' is not host:port"));
  }
  const std::string host = listen.substr(0, colon);
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->server_ = std::move(server);
  s->server_->Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Render(), "text/plain; version=0.0.4");
  });
  s->port_ = port == 0 ? s->server_->bind_to_any_port(host)
                       : (s->server_->bind_to_port(host, port) ? port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("metrics_listen: cannot listen on ", listen));
  }
  httplib::Server* http = s->server_.get();  // owned by s, which joins the thread first
  s->thread_ = std::thread([http] { http->listen_after_bind(); });
  Log(LogLevel::kInfo, "metrics", "serving /metrics",
      {{"address", host}, {"port", absl::StrCat(s->port_)}});
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace qsign::metrics
