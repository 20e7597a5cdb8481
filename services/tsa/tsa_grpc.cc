#include "services/tsa/tsa_grpc.h"

#include "absl/status/status.h"
#include "common/grpc_status.h"

namespace qsign::tsa {

grpc::Status TsaGrpc::Timestamp(grpc::ServerContext*, const qsign::v1::TimestampRequest* req,
                                qsign::v1::TimestampResponse* resp) {
  if (req->query().empty() || req->query().size() > kMaxQueryBytes) {
    return LoggedReply("tsa", "Timestamp",
                       absl::InvalidArgumentError("query: a DER TimeStampReq of 1..16384 bytes"));
  }
  TimestampReply reply = authority_->Respond(req->query());
  resp->set_reply(std::move(reply.der));
  resp->set_granted(reply.granted);
  return grpc::Status::OK;
}

}  // namespace qsign::tsa
