#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/strings.h"

namespace qsign::metrics {
namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.9g", v);
}

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Adds le="..." to an already rendered label set.
std::string WithLe(const std::string& rendered, const std::string& le) {
  std::string inner = rendered.empty() ? "" : rendered.substr(1, rendered.size() - 2) + ",";
  return absl::StrCat("{", inner, "le=\"", le, "\"}");
}

}  // namespace

std::string RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", labels[i].first, "=\"", Escape(labels[i].second),
                    "\"");
  }
  out.push_back('}');
  return out;
}

const std::vector<double>& Registry::DefaultLatencyBuckets() {
  static const std::vector<double>* const buckets = new std::vector<double>{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

Registry& Registry::Global() {
  static Registry* const registry = new Registry();
  return *registry;
}

Registry::Family& Registry::FamilyLocked(std::string_view name, std::string_view type,
                                         std::string_view help) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{std::string(type), std::string(help)}).first;
  } else if (it->second.type != type) {
    // Two call sites disagree about what a metric is: a bug, not something to render.
    std::fprintf(stderr, "metric %.*s is a %s, not a %.*s\n", static_cast<int>(name.size()),
                 name.data(), it->second.type.c_str(), static_cast<int>(type.size()), type.data());
    std::abort();
  }
  return it->second;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

Counter* Registry::GetCounter(std::string_view name, std::string_view help, const Labels& labels) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Counter>& c = FamilyLocked(name, "counter", help).counters[key];
  if (c == nullptr) c = std::make_unique<Counter>();
  return c.get();
}

Gauge* Registry::GetGauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Gauge>& g = FamilyLocked(name, "gauge", help).gauges[key];
  if (g == nullptr) g = std::make_unique<Gauge>();
  return g.get();
}

Histogram* Registry::GetHistogram(std::string_view name, std::string_view help,
                                  const Labels& labels, const std::vector<double>& buckets) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Histogram>& h = FamilyLocked(name, "histogram", help).histograms[key];
  if (h == nullptr) h = std::make_unique<Histogram>(buckets);
  return h.get();
}

void Registry::AddCounter(std::string_view name, std::string_view help, const Labels& labels,
                          double value) {
  GetCounter(name, help, labels)->Increment(value);
}

void Registry::SetGauge(std::string_view name, std::string_view help, const Labels& labels,
                        double value) {
  GetGauge(name, help, labels)->Set(value);
}

void Registry::Observe(std::string_view name, std::string_view help, const Labels& labels,
                       double value, const std::vector<double>& buckets) {
  GetHistogram(name, help, labels, buckets)->Observe(value);
}

Registry::CollectorId Registry::AddCollector(std::function<void(Registry&)> collector) {
  absl::MutexLock lock(&mu_);
  const CollectorId id = next_collector_++;
  collectors_.emplace(id, std::move(collector));
  return id;
}

void Registry::RemoveCollector(CollectorId id) {
  absl::MutexLock collecting(&collect_mu_);
  absl::MutexLock lock(&mu_);
  collectors_.erase(id);
}

std::string Registry::Render() {
  {
    absl::MutexLock collecting(&collect_mu_);
    std::vector<std::function<void(Registry&)>> collectors;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, c] : collectors_) collectors.push_back(c);
    }
    for (auto& c : collectors) c(*this);
  }
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", Av(f.help), "\n# TYPE ", name, " ", f.type, "\n");
    for (const auto& [labels, c] : f.counters) {
      absl::StrAppend(&out, name, labels, " ", FormatValue(c->value()), "\n");
    }
    for (const auto& [labels, g] : f.gauges) {
      absl::StrAppend(&out, name, labels, " ", FormatValue(g->value()), "\n");
    }
    for (const auto& [labels, h] : f.histograms) {
      // One read of every bucket, so that +Inf and _count agree with the buckets.
      const std::vector<uint64_t> counts = h->BucketCounts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h->bounds().size(); ++i) {
        cumulative += counts[i];
        absl::StrAppend(&out, name, "_bucket", WithLe(labels, FormatValue(h->bounds()[i])), " ",
                        cumulative, "\n");
      }
      cumulative += counts.back();
      absl::StrAppend(&out, name, "_bucket", WithLe(labels, "+Inf"), " ", cumulative, "\n");
      absl::StrAppend(&out, name, "_sum", labels, " ", FormatValue(h->sum()), "\n");
      absl::StrAppend(&out, name, "_count", labels, " ", cumulative, "\n");
    }
  }
  return out;
}

}  // namespace qsign::metrics
