// The config text format (common/daemon/config.h): parse, defaults, validation. Validation opens
// every file the config names; here each path is first pointed at one small file, because what
// the named files hold is not this parser's input (and /dev/zero would never end).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/daemon/config.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"

namespace {

namespace gp = ::google::protobuf;

const std::string& HarmlessFile() {
  static const std::string* path = [] {
    char name[] = "/tmp/qsign-config-fuzz-XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0 || write(fd, "0123456789abcdef0123456789abcdef\n", 33) != 33) std::abort();
    close(fd);
    return new std::string(name);
  }();
  return *path;
}

bool IsPath(const gp::FieldDescriptor* f) {
  return f->type() == gp::FieldDescriptor::TYPE_STRING &&
         (f->name().ends_with("_file") || f->name() == "module");
}

void RedirectFiles(gp::Message& m) {
  const gp::Reflection* r = m.GetReflection();
  const gp::Descriptor* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const gp::FieldDescriptor* f = d->field(i);
    if (f->type() == gp::FieldDescriptor::TYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) {
          RedirectFiles(*r->MutableRepeatedMessage(&m, f, j));
        }
      } else if (r->HasField(m, f)) {
        RedirectFiles(*r->MutableMessage(&m, f));
      }
    } else if (IsPath(f)) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) {
          r->SetRepeatedString(&m, f, j, HarmlessFile());
        }
      } else if (!r->GetString(m, f).empty()) {
        r->SetString(&m, f, HarmlessFile());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // Config files are small; deep nesting is protobuf's limit.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = qsign::ParseConfigText(text, "fuzz.textproto");
  if (!config.ok()) return 0;
  RedirectFiles(*config);
  qsign::ApplyConfigDefaults(*config);
  if (!qsign::ValidateConfig(*config).ok()) return 0;
  (void)qsign::ConfiguredServices(*config);
  for (const char* svc : {"signer", "consent", "identity", "lifecycle"}) {
    (void)qsign::RunsHere(*config, svc);
    (void)qsign::PeerTarget(*config, svc);
  }
  return 0;
}
