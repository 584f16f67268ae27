// Who may see and cancel a task (rights.cpp): the rules of pg_stat_activity
// and pg_cancel_backend. Include after pg.hpp.
#pragma once

namespace lantern {

struct Visibility {
	bool see_all;
};
void visibility_init(Visibility *v);
bool visibility_check(const Visibility *v, Oid run_as);
bool may_cancel(Oid run_as);

} // namespace lantern
