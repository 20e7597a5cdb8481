// Signatures per second through hsm/ next to a bare PKCS#11 loop on the same SoftHSM2 token and
// OpenSSL signing with a software key, all measured in this one run.
//   build/bench/bench_hsm [--seconds=3] [--threads=1,2] [--json_only]
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/ossl.h"
#include "hsm/hsm.h"
#include "hsm/testing/bare_pkcs11.h"
#include "hsm/testing/softhsm_token.h"

ABSL_FLAG(double, seconds, 3.0, "measurement time per case");
ABSL_FLAG(std::string, threads, "1,2", "comma-separated thread counts");

namespace qsign::bench {
namespace {

// Runs fn(thread_index) in `threads` threads until `d` has passed; returns calls per second.
template <typename Fn>
double Rate(int threads, absl::Duration d, Fn fn) {
  std::atomic<bool> stop{false};
  std::atomic<long> total{0};
  std::vector<std::thread> workers;
  absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!fn(t)) {
          std::fprintf(stderr, "bench: operation failed\n");
          std::exit(1);
        }
        ++n;
      }
      total += n;
    });
  }
  absl::SleepFor(d);
  stop = true;
  for (auto& w : workers) w.join();
  return static_cast<double>(total.load()) / absl::ToDoubleSeconds(absl::Now() - start);
}

double OpenSslRate(hsm::KeyType type, int threads, absl::Duration d) {
  OsslPtr<EVP_PKEY> key(hsm::IsEc(type)
                            ? EVP_EC_gen(type == hsm::KeyType::kEcP256 ? "P-256" : "P-384")
                            : EVP_RSA_gen(hsm::KeyBits(type)));
  unsigned char digest[32];
  RAND_bytes(digest, sizeof digest);
  return Rate(threads, d, [&](int) {
    OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    if (EVP_PKEY_sign_init(ctx.get()) != 1) return false;
    if (!hsm::IsEc(type)) {
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING);
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256());
    }
    unsigned char sig[1024];
    size_t len = sizeof sig;
    return EVP_PKEY_sign(ctx.get(), sig, &len, digest, sizeof digest) == 1;
  });
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Duration d = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::vector<int> thread_counts;
  for (auto s : absl::StrSplit(absl::GetFlag(FLAGS_threads), ',')) {
    thread_counts.push_back(std::stoi(std::string(s)));
  }
  auto token = hsm::testing::SoftHsmToken::Create("qsign-bench");
  if (!token.ok()) {
    std::fprintf(stderr, "bench: %s\n", token.status().ToString().c_str());
    return 1;
  }
  auto hsm = hsm::NewPkcs11Hsm((*token)->config(8));
  if (!hsm.ok()) {
    std::fprintf(stderr, "bench: %s\n", hsm.status().ToString().c_str());
    return 1;
  }
  std::printf("%-10s %7s %14s %14s %9s %14s\n", "key", "threads", "hsm/ sig/s", "bare sig/s",
              "hsm/bare", "openssl sig/s");
  std::vector<std::string> json;
  for (hsm::KeyType type : {hsm::KeyType::kEcP256, hsm::KeyType::kRsa3072}) {
    const std::string id = std::string("bench-") + std::string(hsm::KeyTypeName(type));
    if (auto k = (*hsm)->GenerateKeyPair(id, type); !k.ok()) {
      std::fprintf(stderr, "bench: %s\n", k.status().ToString().c_str());
      return 1;
    }
    hsm::SignParams params{
        .scheme = hsm::IsEc(type) ? hsm::SignScheme::kEcdsa : hsm::SignScheme::kRsaPkcs1,
        .hash = hsm::HashAlgorithm::kSha256,
        .ecdsa_der = false};
    const std::vector<std::string> digest = {std::string(32, '\x5a')};
    for (int threads : thread_counts) {
      double ours =
          Rate(threads, d, [&](int) { return (*hsm)->SignDigests(id, params, digest).ok(); });
      auto bare = hsm::testing::BarePkcs11SignRate((*token)->config(8), id, threads, d);
      if (!bare.ok()) {
        std::fprintf(stderr, "bench: %s\n", bare.status().ToString().c_str());
        return 1;
      }
      double ossl = OpenSslRate(type, threads, d);
      std::printf("%-10s %7d %14.0f %14.0f %8.1f%% %14.0f\n",
                  std::string(hsm::KeyTypeName(type)).c_str(), threads, ours, *bare,
                  100.0 * ours / *bare, ossl);
      json.push_back(absl::StrFormat(
          R"({"bench":"hsm","key":"%s","threads":%d,"hsm_sig_per_s":%.0f,"bare_pkcs11_sig_per_s":%.0f,"ratio_to_bare":%.3f,"openssl_sig_per_s":%.0f})",
          hsm::KeyTypeName(type), threads, ours, *bare, ours / *bare, ossl));
    }
  }
  for (const auto& line : json) std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) { return qsign::bench::Main(argc, argv); }
