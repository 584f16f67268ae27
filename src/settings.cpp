// The lantern_fdw.* settings.
#include "pg.hpp"
#include "settings.hpp"

#include "libpq-fe.h"

namespace lantern {

int guc_max_tasks = 1024;
int guc_max_parallel_tasks = 4;
int guc_max_parallel_tasks_per_role = 0;
char *guc_host = nullptr;
char *guc_connection_options = nullptr;
int guc_idle_connection_timeout_ms = 10000;
int guc_max_idle_connections = 8;
int guc_task_retention_s = 0;
int guc_default_max_runtime_ms = 0;
int guc_max_output_size = 1024 * 1024; // bytes (issue 12)

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

void
define_settings()
{
	DefineCustomIntVariable("lantern_fdw.max_tasks", "Maximum number of reserved, queued and running tasks.",
							"Each task holds a slot of shared memory from its submission until it ends.",
							&guc_max_tasks, 1024, 1, 1000000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.max_parallel_tasks", "Maximum number of tasks run at once.", nullptr,
							&guc_max_parallel_tasks, 4, 1, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.max_parallel_tasks_per_role",
							"Maximum number of tasks of one role run at once (0: no limit).",
							"A task of a role at the limit waits; tasks of other roles queued after it start.",
							&guc_max_parallel_tasks_per_role, 0, 0, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.default_max_runtime",
							"Longest a task may run, from the start of its first statement (0: no limit).",
							"A task that runs longer is interrupted as a cancel would, and ends failed.",
							&guc_default_max_runtime_ms, 0, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
							nullptr);
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
	DefineCustomIntVariable("lantern_fdw.max_idle_connections",
							"Maximum number of task connections the executor keeps open without a task.",
							"Idle connections kept for reuse, and connections opened ahead of tasks being submitted.",
							&guc_max_idle_connections, 8, 0, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.task_retention", "How long ended tasks are kept in lantern.tasks.",
							"0 keeps them forever.", &guc_task_retention_s, 0, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S,
							nullptr, nullptr, nullptr);
	DefineCustomIntVariable("lantern_fdw.max_output_size",
							"Most output one task keeps: the messages and the result rows of its statements together.",
							"Past it the task runs on and its output is marked truncated.", &guc_max_output_size,
							1024 * 1024, 0, 100 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_BYTE, nullptr, nullptr, nullptr);
	MarkGUCPrefixReserved("lantern_fdw");
}

} // namespace lantern
