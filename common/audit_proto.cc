#include "common/audit_proto.h"

#include "common/proto_time.h"

namespace qsign {

void ToProto(const db::AuditPage& page, qsign::v1::ListAccountAuditResponse* out) {
  for (const db::AuditRecord& r : page.records) {
    qsign::v1::AuditRecord* record = out->add_records();
    *record->mutable_at() = ToProto(r.at);
    record->set_actor(r.event.actor);
    record->set_action(r.event.action);
    record->set_target(r.event.target);
    record->set_client_address(r.event.client_address);
    record->set_outcome(r.event.outcome);
    record->set_details(r.event.details);
    record->set_source(r.source);
    record->set_seq(r.seq);
  }
  out->set_next_page_token(page.next_page_token);
}

}  // namespace qsign
