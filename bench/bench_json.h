// What every bench's JSON lines share (docs/PERFORMANCE.md, bench/run-all): the 1-minute load
// average when a case starts, so that a figure is never read without it.
#ifndef QSIGN_BENCH_BENCH_JSON_H_
#define QSIGN_BENCH_BENCH_JSON_H_

#include <cstdio>

namespace qsign::bench {

// The 1-minute load average from /proc/loadavg; -1 when it cannot be read.
inline double Load1() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

}  // namespace qsign::bench

#endif  // QSIGN_BENCH_BENCH_JSON_H_
