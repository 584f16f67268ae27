// Module entry: settings, shared memory, hooks and the executor's registration.
#include "pg.hpp"
#include "lantern.hpp"

#include "libpq-fe.h"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace lantern {

int guc_max_tasks = 1024;
int guc_max_parallel_tasks = 4;
char *guc_host = nullptr;
char *guc_connection_options = nullptr;
int guc_idle_connection_timeout_ms = 10000;
int guc_task_retention_s = 0;

static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;
static ProcessUtility_hook_type prev_process_utility_hook = nullptr;

void
require_preloaded()
{
	if (!board_attached())
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("lantern_fdw must be loaded via shared_preload_libraries"),
						errhint("Add lantern_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
}

// Options the executor sets itself may not be overridden.
static bool
check_connection_options(char **newval, void **, GucSource)
{
	if (*newval == nullptr || (*newval)[0] == '\0')
		return true;
	char *err = nullptr;
	PQconninfoOption *opts = PQconninfoParse(*newval, &err);
	if (opts == nullptr) {
		GUC_check_errdetail("%s", err != nullptr ? err : "out of memory");
		if (err != nullptr)
			PQfreemem(err);
		return false;
	}
	bool ok = true;
	for (PQconninfoOption *o = opts; o->keyword != nullptr; o++) {
		if (o->val == nullptr)
			continue;
		static const char *const reserved[] = {"dbname", "user", "replication", "application_name"};
		for (const char *r : reserved)
			if (strcmp(o->keyword, r) == 0) {
				GUC_check_errdetail("Option \"%s\" is set by lantern_fdw for each task.", r);
				ok = false;
			}
	}
	PQconninfoFree(opts);
	return ok;
}

static void
define_settings()
{
	DefineCustomIntVariable("lantern_fdw.max_tasks", "Maximum number of reserved, queued and running tasks.",
							"Each task holds a slot of shared memory from its submission until it ends.",
							&guc_max_tasks, 1024, 1, 1000000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.max_parallel_tasks", "Maximum number of tasks run at once.", nullptr,
							&guc_max_parallel_tasks, 4, 1, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("lantern_fdw.host", "Host the executor connects to for running tasks.",
							   "Empty means the first of unix_socket_directories, or localhost if there is none.",
							   &guc_host, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("lantern_fdw.connection_options",
							   "Extra libpq connection options for the executor's connections.",
							   "A libpq keyword/value string, such as \"sslmode=disable passfile=/path\".",
							   &guc_connection_options, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_connection_options, nullptr,
							   nullptr);
	DefineCustomIntVariable("lantern_fdw.idle_connection_timeout",
							"How long an idle task connection is kept for reuse.", "0 closes it after each task.",
							&guc_idle_connection_timeout_ms, 10000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
							nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.task_retention", "How long ended tasks are kept in lantern.tasks.",
							"0 keeps them forever.", &guc_task_retention_s, 0, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S,
							nullptr, nullptr, nullptr);
	MarkGUCPrefixReserved("lantern_fdw");
}

static void
shmem_request()
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(board_shmem_size());
	RequestNamedLWLockTranche("lantern_fdw", 1);
}

static void
shmem_startup()
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	board_shmem_startup();
}

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
		LWLockAcquire(board_lock(), LW_SHARED);
		for (int i = board_first_active(); i >= 0; i = board_next_active(i)) {
			const TaskSlot *s = board_slot(i);
			// An ending task has recorded its outcome, or is about to.
			if (s->state != SlotState::Free && s->state != SlotState::Ending &&
				(s->run_as == role || s->login_role == role))
				active++;
		}
		LWLockRelease(board_lock());
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
		if (strcmp(strVal(lfirst(lc)), "lantern_fdw") == 0) {
			Oid nsp = store_namespace(true);
			return OidIsValid(nsp) ? get_relname_relid("task_log", nsp) : InvalidOid;
		}
	return InvalidOid;
}

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
		forget_store_at_commit(dropped_store);
}

} // namespace lantern

void
_PG_init(void)
{
	using namespace lantern;
	// Without preloading there is no board: entry points say so when called.
	if (!process_shared_preload_libraries_in_progress)
		return;
	define_settings();
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
	register_executor();
}
