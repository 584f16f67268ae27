// Visibility and cancel rights (the rules of pg_stat_activity and
// pg_cancel_backend).
#include "pg.hpp"
#include "rights.hpp"

namespace lantern {

void
visibility_init(Visibility *v)
{
	v->see_all = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
}

bool
visibility_check(const Visibility *v, Oid run_as)
{
	return v->see_all || has_privs_of_role(GetUserId(), run_as);
}

bool
may_cancel(Oid run_as)
{
	if (superuser() || has_privs_of_role(GetUserId(), run_as))
		return true;
	return has_privs_of_role(GetUserId(), ROLE_PG_SIGNAL_BACKEND) && !superuser_arg(run_as);
}

} // namespace lantern
