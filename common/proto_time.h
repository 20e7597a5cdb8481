// absl::Time / absl::Duration <-> google.protobuf.Timestamp / Duration, for every gRPC edge.
#ifndef QSIGN_COMMON_PROTO_TIME_H_
#define QSIGN_COMMON_PROTO_TIME_H_

#include <cstdint>
#include <ctime>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace qsign {

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const timespec spec = absl::ToTimespec(t);
  ts.set_seconds(spec.tv_sec);
  ts.set_nanos(static_cast<int32_t>(spec.tv_nsec));
  return ts;
}

inline absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace qsign

#endif  // QSIGN_COMMON_PROTO_TIME_H_
