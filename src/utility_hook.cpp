// The utility hook: the rules lantern_fdw adds to catalog commands. Commands
// that need a database to themselves first have the executor close its idle
// connections; DROP ROLE of a role active tasks run as (or log in as) fails;
// DROP EXTENSION takes the extension's tasks off the board when it commits.
#include "pg.hpp"
#include "board.hpp"
#include "store.hpp"
#include "utility_hook.hpp"
#include "xact.hpp"

namespace lantern {

// The executor's idle connections must not hold up commands that need a
// database to themselves: ask it to close them first.
static bool
needs_database_alone(Node *stmt)
{
	switch (nodeTag(stmt)) {
	case T_DropdbStmt:
	case T_CreatedbStmt:
		return true;
	case T_RenameStmt:
		return reinterpret_cast<RenameStmt *>(stmt)->renameType == OBJECT_DATABASE;
	case T_AlterDatabaseStmt:
		return true;
	default:
		return false;
	}
}

// The roles a DROP ROLE names (their OIDs and names), looked up before it runs.
static List *
roles_to_drop(DropRoleStmt *stmt, List **names)
{
	List *oids = NIL;
	ListCell *lc;
	foreach (lc, stmt->roles) {
		RoleSpec *rs = lfirst_node(RoleSpec, lc);
		Oid role = rs->roletype == ROLESPEC_CSTRING ? get_role_oid(rs->rolename, true) : InvalidOid;
		if (OidIsValid(role)) {
			oids = lappend_oid(oids, role);
			*names = lappend(*names, rs->rolename);
		}
	}
	return oids;
}

// Checked after DROP ROLE ran (so its own permission checks come first): a
// role that active tasks run as, or log in as, cannot be dropped.
static void
check_dropped_roles_have_no_tasks(List *oids, List *names)
{
	ListCell *lc;
	foreach (lc, oids) {
		Oid role = lfirst_oid(lc);
		int active = 0;
		board_acquire(LW_SHARED);
		board_each_active([&](int, const TaskSlot *s) {
			// An ending task has recorded its outcome, or is about to.
			if (s->state != SlotState::Ending && (s->run_as == role || s->login_role == role))
				active++;
		});
		board_release();
		if (active > 0) {
			const char *name = static_cast<const char *>(list_nth(names, foreach_current_index(lc)));
			ereport(ERROR, (errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
							errmsg("role \"%s\" cannot be dropped because it has active lantern_fdw tasks", name),
							errdetail_plural("%d task is queued or running.", "%d tasks are queued or running.", active,
											 active),
							errhint("Cancel them with lantern.cancel_task() or wait for them to end.")));
		}
	}
}

// The store of this database's lantern_fdw if stmt drops the extension.
static Oid
store_dropped_by(Node *stmt)
{
	if (!IsA(stmt, DropStmt))
		return InvalidOid;
	DropStmt *drop = reinterpret_cast<DropStmt *>(stmt);
	if (drop->removeType != OBJECT_EXTENSION)
		return InvalidOid;
	ListCell *lc;
	foreach (lc, drop->objects)
		if (strcmp(strVal(lfirst(lc)), "lantern_fdw") == 0)
			return store_find_relid();
	return InvalidOid;
}

static ProcessUtility_hook_type prev_process_utility_hook = nullptr;

static void
process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node *stmt = pstmt->utilityStmt;
	Oid dropped_store = InvalidOid;
	List *dropped_roles = NIL;
	List *dropped_role_names = NIL;
	if (board_attached()) {
		if (needs_database_alone(stmt))
			board_request_close_idle();
		if (IsA(stmt, DropRoleStmt))
			dropped_roles = roles_to_drop(reinterpret_cast<DropRoleStmt *>(stmt), &dropped_role_names);
		dropped_store = store_dropped_by(stmt);
	}
	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (dropped_roles != NIL)
		check_dropped_roles_have_no_tasks(dropped_roles, dropped_role_names);
	if (OidIsValid(dropped_store))
		xact_forget_store_at_commit(dropped_store);
}

void
utility_hook_install()
{
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
}

} // namespace lantern
