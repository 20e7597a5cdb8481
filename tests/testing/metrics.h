// Reading this process's metrics as /metrics serves them, for tests that count events.
#ifndef QSIGN_TESTS_TESTING_METRICS_H_
#define QSIGN_TESTS_TESTING_METRICS_H_

#include <string>

namespace qsign::testing {

// The value of one series, e.g. `name{label="x"}`, in metrics::Registry::Global()'s text; 0 when
// absent.
double MetricValue(const std::string& series);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_METRICS_H_
