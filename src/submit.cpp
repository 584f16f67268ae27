// Submitting a task inside a client's transaction: validation, the board
// slot (published by the transaction callbacks at commit) and the durable
// row; and recovery's re-queueing of a task of an earlier server life.
#include "pg.hpp"
#include "board.hpp"
#include "module.hpp"
#include "settings.hpp"
#include "store.hpp"
#include "submit.hpp"
#include "xact.hpp"

namespace lantern
{

// Moves a syntax error's position from the client's statement into the task's
// query, so the caret points into the task text.
static void
task_query_error_callback(void *arg)
{
	const char *query = static_cast<const char *>(arg);
	int pos = geterrposition();
	if (pos > 0) {
		errposition(0);
		internalerrposition(pos);
		internalerrquery(query);
	}
	errcontext("validating the query of a lantern_fdw task");
}

List *
parse_task_query(const char *query)
{
	ErrorContextCallback callback;
	callback.callback = task_query_error_callback;
	callback.arg = const_cast<char *>(query);
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	List *stmts = raw_parser(query, RAW_PARSE_DEFAULT);
	error_context_stack = callback.previous;
	return stmts;
}

static bool
is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace(static_cast<unsigned char>(*s)))
			return false;
	return true;
}

static bool
role_can_login(Oid roleid)
{
	HeapTuple tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		return false;
	bool canlogin = reinterpret_cast<Form_pg_authid>(GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return canlogin;
}

// Reserves a board slot for a task of this database, owned by the current
// transaction: Done, or BoardFull, or RoleAtCap (per_role_queue_cap, see
// board_reserve). The executor logs in as run_as where it may, else as
// login_role followed by SET ROLE run_as.
static Requeue
reserve_slot(Store *store, int64 jobid, Oid run_as, Oid login_role, TimestampTz submitted_at, int64 max_runtime_us,
             bool keep_result, int per_role_queue_cap)
{
	TaskSlot init = {};
	init.max_runtime_us = max_runtime_us;
	init.dboid = MyDatabaseId;
	init.store_relid = store_relid(store);
	init.jobid = jobid;
	init.run_as = run_as;
	init.login_role = login_role;
	init.owner_pid = MyProcPid;
	init.submitted_at = submitted_at;
	init.keep_result = keep_result;
	const char *run_as_name = GetUserNameFromId(run_as, false);
	if (role_can_login(run_as)) {
		namestrcpy(&init.connect_as, run_as_name);
	} else {
		namestrcpy(&init.connect_as, GetUserNameFromId(login_role, false));
		namestrcpy(&init.set_role, run_as_name);
	}
	xact_reserve_room(1);
	uint32 generation;
	int index = board_reserve(init, &generation, per_role_queue_cap);
	if (index == kBoardFull)
		return Requeue::BoardFull;
	if (index == kRoleAtCap)
		return Requeue::RoleAtCap;
	xact_note_submit(index, generation);
	return Requeue::Done;
}

Oid
task_sequence_oid()
{
	Oid nsp = get_namespace_oid("lantern", true);
	Oid seq = OidIsValid(nsp) ? get_relname_relid("tasks_jobid_seq", nsp) : InvalidOid;
	if (!OidIsValid(seq))
		ereport(ERROR,
		        (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		         errmsg("sequence lantern.tasks_jobid_seq does not exist"),
		         errhint("Reinstall the extension with DROP EXTENSION lantern_fdw; CREATE EXTENSION lantern_fdw.")));
	return seq;
}

int64
submit_task(Store *store, const NewTask &task, TimestampTz *started_at_out, const char **username_out)
{
	require_preloaded();
	if (RecoveryInProgress())
		ereport(ERROR,
		        (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION), errmsg("cannot submit a lantern_fdw task during recovery"),
		         errhint("Submit tasks on the primary server.")));
	PreventCommandIfReadOnly("lantern.async_task()");

	if (task.query == nullptr)
		ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION), errmsg("query of a lantern_fdw task must not be null")));
	if (is_blank(task.query))
		ereport(ERROR,
		        (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("query of a lantern_fdw task must not be empty")));
	if (parse_task_query(task.query) == NIL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		                errmsg("query of a lantern_fdw task contains no statement")));

	const char *username = task.username != nullptr ? task.username : GetUserNameFromId(GetUserId(), false);
	Oid run_as = get_role_oid(username, true);
	if (!OidIsValid(run_as))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("role \"%s\" does not exist", username)));
	if (!is_member_of_role(GetUserId(), run_as))
		ereport(ERROR,
		        (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		         errmsg("permission denied to submit a task as role \"%s\"", username),
		         errdetail("Only roles that could SET ROLE to \"%s\" may submit tasks that run as it.", username)));

	int64 jobid = task.has_jobid ? task.jobid : nextval_internal(task_sequence_oid(), true);
	if (jobid <= 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("jobid must be positive")));
	TimestampTz submitted_at = task.has_started_at ? task.started_at : GetCurrentTransactionStartTimestamp();
	int64 max_runtime_us = 0;
	if (task.max_runtime != nullptr) {
		max_runtime_us = interval_usecs(task.max_runtime);
		if (max_runtime_us <= 0)
			ereport(ERROR,
			        (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			         errmsg("max_runtime of a lantern_fdw task must be positive"),
			         errdetail("It was %s.",
			                   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(task.max_runtime)))),
			         errhint("Give NULL for no limit beyond lantern_fdw.default_max_runtime.")));
	}
	// A run_at in the future: the task is scheduled, and waits in the store
	// (no board slot) until then. A run_at in the past means now.
	bool scheduled = task.run_at != 0 && task.run_at > GetCurrentTimestamp();
	// The queue beyond the board: when the board is full, or this database's
	// queue is already in the store (first come, first served), or the role
	// already has lantern_fdw.max_parallel_tasks_per_role tasks waiting on
	// the board (so that its tasks cannot fill the board while it may run
	// only that many: fairness between roles), the task waits in the store
	// only, and a loader brings it onto the board later.
	board_acquire(LW_SHARED);
	bool db_waiting = board_db_waiting(MyDatabaseId);
	board_release();
	bool on_board = !scheduled && !db_waiting &&
	                reserve_slot(store, jobid, run_as, GetSessionUserId(), submitted_at, max_runtime_us,
	                             task.keep_result, guc_max_parallel_tasks_per_role) == Requeue::Done;
	if (!on_board)
		xact_note_store_submit(scheduled ? task.run_at : 0);

	NewRow row;
	row.jobid = jobid;
	row.query = task.query;
	row.job_name = task.job_name;
	row.username = username;
	row.started_at = submitted_at;
	row.run_as = run_as;
	row.login_role = GetSessionUserId();
	row.board_id = on_board ? board_id() : kNotOnBoard;
	row.scheduled = scheduled;
	row.run_at = task.run_at;
	row.max_runtime = task.max_runtime;
	row.keep_result = task.keep_result;
	store_insert(store, row);

	if (started_at_out != nullptr)
		*started_at_out = submitted_at;
	if (username_out != nullptr)
		*username_out = username;
	return jobid;
}

// Recovery and loaders: puts a task that is not on this board onto it, in
// the current transaction.
Requeue
requeue_task(Store *store, HeapTuple row, int per_role_queue_cap)
{
	TaskRow r;
	store_read_row(store, row, &r);
	if (GetUserNameFromId(r.run_as, true) == nullptr ||
	    (!role_can_login(r.run_as) && GetUserNameFromId(r.login_role, true) == nullptr)) {
		store_record_end(store, row, "failed", "ERROR:  the role of the task no longer exists");
		return Requeue::Done;
	}
	Requeue result = reserve_slot(store, r.jobid, r.run_as, r.login_role, r.started_at, r.max_runtime_us,
	                              r.keep_result, per_role_queue_cap);
	if (result == Requeue::Done)
		store_set_queued(store, row, board_id());
	return result;
}

} // namespace lantern
