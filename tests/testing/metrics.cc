#include "tests/testing/metrics.h"

#include <string>

#include "common/metrics.h"

namespace qsign::testing {

double MetricValue(const std::string& series) {
  const std::string text = metrics::Registry::Global().Render();
  const std::string prefix = "\n" + series + " ";
  size_t at = text.find(prefix);
  if (at == std::string::npos) return 0;
  at += prefix.size();
  return std::stod(text.substr(at, text.find('\n', at) - at));
}

}  // namespace qsign::testing
