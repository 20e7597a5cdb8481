#include "common/db/journal.h"

#include "absl/strings/str_replace.h"
#include "common/strings.h"

namespace qsign::db {
namespace {

constexpr char kAppendOnlySql[] =
    R"sql(CREATE FUNCTION {table}_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
  FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change();
)sql";

}  // namespace

std::string AppendOnlySql(std::string_view table) {
  return absl::StrReplaceAll(kAppendOnlySql, {{"{table}", Av(table)}});
}

}  // namespace qsign::db
