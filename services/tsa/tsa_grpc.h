// qsign.v1.Tsa over gRPC: the same exchange as the HTTP listener, for the cluster's services.
#ifndef QSIGN_SERVICES_TSA_TSA_GRPC_H_
#define QSIGN_SERVICES_TSA_TSA_GRPC_H_

#include "qsign/v1/tsa.grpc.pb.h"
#include "services/tsa/tsa.h"

namespace qsign::tsa {

class TsaGrpc final : public qsign::v1::Tsa::Service {
 public:
  explicit TsaGrpc(TimestampAuthority* authority) : authority_(authority) {}

  grpc::Status Timestamp(grpc::ServerContext* ctx, const qsign::v1::TimestampRequest* req,
                         qsign::v1::TimestampResponse* resp) override;

 private:
  TimestampAuthority* authority_;  // Not owned.
};

}  // namespace qsign::tsa

#endif  // QSIGN_SERVICES_TSA_TSA_GRPC_H_
