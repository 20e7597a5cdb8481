// The browser journey (journey.py) in real headless Chromium against the real services: this
// binary starts identity, consent, lifecycle and signer (PostgreSQL, SoftHSM2) and the web stack
// through tests/testing Stacks, writes the pages' expected texts in every language, then runs
// the Selenium script and expects it to pass. The gateway runs too, for journey.py's small
// e-service that signs its user in (authorization code + PKCE) and gets a signature, and qsign's
// TSA, for the portal's B-T signature (checked by pdfsig and openssl cms/ts in journey.py).
// Screenshots: BROWSER_ARTIFACTS_DIR.
#include <openssl/sha.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/pades/testing/test_pdfs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/gateway/stack.h"
#include "services/web/i18n.h"
#include "services/web/stack.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

class BrowserTest : public testing::ServiceTest {};

std::string Sha256Hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
}

// Every message in every language, as journey.py compares them.
std::string Texts() {
  nlohmann::json all = nlohmann::json::object();
  for (web::Lang lang : web::AllLangs()) {
    nlohmann::json texts = nlohmann::json::object();
    for (std::string_view key : web::MessageKeys()) texts[std::string(key)] = web::T(lang, key);
    all[std::string(web::LangTag(lang))] = texts;
  }
  return all.dump();
}

TEST_F(BrowserTest, JourneyClickedThroughInChromium) {
  for (const char* tool : {"/usr/bin/chromium", "/usr/bin/chromedriver"}) {
    ASSERT_EQ(access(tool, X_OK), 0) << tool << " is missing: scripts/setup installs it";
  }
  // The test e-service's port (journey.py serves it) and its registration at the gateway.
  const int eservice_port = testing::FreeLoopbackPort();
  ASSERT_GT(eservice_port, 0);
  const std::string eservice_secret = "e-uprava-browser-test-secret";
  std::ofstream(token().dir() + "/relying-parties")
      << "e-uprava " << Sha256Hex(eservice_secret) << " e-Управа\n"
      << "+redirect_uri e-uprava http://localhost:" << eservice_port << "/callback\n";
  const std::string mail_dir = token().dir() + "/mail";
  // The portal signs at B-T with qsign's own TSA; lifecycle's listener (the CA's root, OCSP) on
  // a known port, as the certificates name it.
  const int tsa_port = testing::FreeLoopbackPort();
  const int lifecycle_port = testing::FreeLoopbackPort();
  ASSERT_GT(tsa_port, 0);
  ASSERT_GT(lifecycle_port, 0);
  auto stacks = testing::Stacks::Start(
      env(), {.services = {"signer", "consent", "identity", "lifecycle", "gateway", "web", "tsa"},
              .configure = [&](config::v1::ServerConfig& c) {
                c.mutable_consent()->set_enrollments_per_address_per_minute(0);
                // The citizen's mailbox, where the registration link arrives.
                c.mutable_identity()->set_mail_drop_dir(mail_dir);
                c.mutable_lifecycle()->set_http_listen(absl::StrCat("127.0.0.1:", lifecycle_port));
                c.mutable_tsa()->set_http_listen(absl::StrCat("127.0.0.1:", tsa_port));
                c.mutable_web()->set_tsa_url(absl::StrCat("http://127.0.0.1:", tsa_port, "/tsa"));
              }});
  ASSERT_TRUE(stacks.ok()) << stacks.status();
  const int port = web::HttpPort((*stacks)->server().stack("web"));
  ASSERT_GT(port, 0);
  const int gateway_port = gateway::HttpPort((*stacks)->server().stack("gateway"));
  ASSERT_GT(gateway_port, 0);

  const std::string texts = token().dir() + "/texts.json";
  std::ofstream(texts) << Texts();
  const std::string pdf = token().dir() + "/ugovor-уговор.pdf";
  std::ofstream(pdf, std::ios::binary) << pades::testing::SimplePdf(2, "Ugovor o radu");
  // localhost: a secure context for WebCrypto and Secure cookies without TLS.
  const std::string command = absl::StrCat(
      "/usr/bin/python3 ", JOURNEY_PY, " --base=http://localhost:", port, " --texts=", texts,
      " --artifacts=", BROWSER_ARTIFACTS_DIR, " --operator_id=", testing::kOperatorId,
      " --operator_secret=", testing::kOperatorSecret, " --national_id=", testing::NationalId(21),
      " --mail_dir=", mail_dir, " --pin=", testing::kPin,
      " --gateway=http://localhost:", gateway_port, " --eservice_port=", eservice_port,
      " --eservice_secret=", eservice_secret, " --pdf=", pdf,
      " --ca_root=http://127.0.0.1:", lifecycle_port, "/ca/root.crt");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << command;
  EXPECT_EQ(WEXITSTATUS(status), 0) << command;
}

}  // namespace
}  // namespace qsign
