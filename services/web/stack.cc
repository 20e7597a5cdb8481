#include "services/web/stack.h"

#include <memory>
#include <string>
#include <utility>

#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/http/server.h"
#include "common/log.h"
#include "services/web/backend.h"
#include "services/web/web.h"

namespace qsign::web {
namespace {

using daemon::Field;

class WebStack final : public daemon::Stack {
 public:
  static absl::StatusOr<std::unique_ptr<daemon::Stack>> New(const daemon::StackEnv& env);

  void Stop() override {
    if (http_ != nullptr) http_->Stop();  // Its calls into this process finish first.
  }
  int port() const { return http_ == nullptr ? 0 : http_->port(); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Web> web_;
  std::unique_ptr<http::Server> http_;  // Last: stops before what it calls goes.
};

absl::StatusOr<std::unique_ptr<daemon::Stack>> WebStack::New(const daemon::StackEnv& env) {
  const auto& c = env.config.web();
  auto host_port = http::ParseHostPort(c.http_listen());
  if (!host_port.ok()) return Field("web.http_listen", host_port.status());
  auto stack = std::make_unique<WebStack>();
  stack->backend_ = std::make_unique<Backend>(
      env.channels->To("identity"), env.channels->To("consent"), env.channels->To("lifecycle"),
      env.channels->To("signer"), absl::Seconds(c.rpc_timeout_seconds()));
  const bool https = !c.http_cert_file().empty();
  // With a database the replicas share the browser sessions (schema "web").
  if (env.pool != nullptr) {
    if (absl::Status s = SessionStore::Migrate(*env.pool); !s.ok()) return s;
  }
  auto client_address = daemon::ClientAddressResolverOf(c.client_address(), "web.client_address");
  if (!client_address.ok()) return client_address.status();
  stack->web_ = std::make_unique<Web>(
      stack->backend_.get(), env.clock,
      WebOptions{.session_idle = absl::Minutes(c.session_idle_minutes()),
                 .max_sessions = static_cast<size_t>(c.max_sessions()),
                 .audit_page_size = c.audit_page_size(),
                 .max_upload_bytes = static_cast<size_t>(c.max_upload_bytes()),
                 .tsa_url = c.tsa_url(),
                 .https = https,
                 .session_db = env.pool,
                 .client_address = *std::move(client_address)});
  http::ServerOptions options{
      .name = "web",
      .host = host_port->first,
      .port = host_port->second,
      .tls = https,
      .tls_files = {.cert_file = c.http_cert_file(),
                    .key_file = c.http_key_file(),
                    .cert_field = "web.http_cert_file",
                    .key_field = "web.http_key_file"},
      .threads = c.http_threads(),
      .limits = daemon::HttpLimitsOf(env.config),
      // An upload to sign, as multipart form data, plus its envelope.
      .max_body_bytes = static_cast<size_t>(c.max_upload_bytes()) + 64 * 1024,
      .read_timeout = absl::Seconds(30),
      .write_timeout = absl::Seconds(30),
      .keep_alive_max_requests = 100,
      .request_ids = true,
  };
  auto http = http::StartServer(options, stack->web_->Routes());
  if (!http.ok()) return Field("web.http_listen", http.status());
  stack->http_ = *std::move(http);
  Log(LogLevel::kInfo, env.component, "web listener",
      {{"url", stack->http_->base_url()},
       {"http_port", std::to_string(stack->http_->port())},
       {"portal", stack->http_->base_url() + "/"},
       {"app", stack->http_->base_url() + "/app"},
       {"office", stack->http_->base_url() + "/office"}});
  return stack;
}

}  // namespace

const daemon::StackFactory kStack{.section = "web", .build = &WebStack::New};

int HttpPort(daemon::Stack* stack) {
  auto* web = dynamic_cast<WebStack*>(stack);
  return web == nullptr ? 0 : web->port();
}

}  // namespace qsign::web
