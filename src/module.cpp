// Module entry: _PG_init defines the settings, requests and creates the
// shared memory, installs the utility hook and registers the executor.
#include "pg.hpp"
#include "board.hpp"
#include "module.hpp"
#include "settings.hpp"
#include "utility_hook.hpp"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace lantern {

static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

void
require_preloaded()
{
	if (!board_attached())
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("lantern_fdw must be loaded via shared_preload_libraries"),
						errhint("Add lantern_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
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

// The executor (src/executor/): a static worker, restarted a second after
// it exits.
static void
register_executor()
{
	BackgroundWorker worker = {};
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "lantern_fdw", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "lantern_executor_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "lantern_fdw executor", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "lantern_fdw executor", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
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
	utility_hook_install();
	register_executor();
}
