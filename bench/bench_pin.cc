// PIN verifier cost: argon2id (+ HMAC pepper) checks per second for given parameters and threads.
//   bench_pin --t=2 --m_kib=16384 --threads=2 --seconds=3
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/consent/pin.h"

ABSL_FLAG(int, t, 2, "argon2 passes");
ABSL_FLAG(int, m_kib, 16384, "argon2 memory per hash, KiB");
ABSL_FLAG(int, threads, 2, "concurrent checks");
ABSL_FLAG(double, seconds, 3, "how long to run");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int threads = absl::GetFlag(FLAGS_threads);
  auto hasher = qsign::consent::PinHasher::New(
      "k1", qsign::SecretString(std::string(32, 'p')),
      {.time_cost = static_cast<uint32_t>(absl::GetFlag(FLAGS_t)),
       .memory_kib = static_cast<uint32_t>(absl::GetFlag(FLAGS_m_kib)),
       .parallelism = 1},
      threads);
  if (!hasher.ok()) {
    std::cerr << hasher.status() << "\n";
    return 1;
  }
  auto verifier = (*hasher)->Hash("240913");
  if (!verifier.ok()) return 1;
  std::atomic<int64_t> done{0};
  const absl::Time end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::vector<std::thread> pool;
  const absl::Time start = absl::Now();
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      while (absl::Now() < end) {
        if (!(*hasher)->Verify("240913", *verifier).value_or(false)) std::abort();
        ++done;
      }
    });
  }
  for (auto& t : pool) t.join();
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  absl::PrintF("argon2id t=%d m=%d KiB, %d threads: %.0f checks/s, %.2f ms per check per thread\n",
               absl::GetFlag(FLAGS_t), absl::GetFlag(FLAGS_m_kib), threads, done / secs,
               1000.0 * threads * secs / static_cast<double>(done));
  // No reference: the PIN check's cost is chosen (argon2id parameters), not a ratio to reach.
  absl::PrintF(
      "{\"bench\":\"pin\",\"case\":\"argon2id_t%d_m%d_threads%d\",\"per_s\":%.1f,"
      "\"ms_per_check\":%.2f}\n",
      absl::GetFlag(FLAGS_t), absl::GetFlag(FLAGS_m_kib), threads, done / secs,
      1000.0 * threads * secs / static_cast<double>(done));
  return 0;
}
