// The SQL API: the functions of lantern_fdw--*.sql that clients call.
#include "pg.hpp"
#include "board.hpp"
#include "cancel.hpp"
#include "module.hpp"
#include "rights.hpp"
#include "sql_api.hpp"
#include "store.hpp"
#include "submit.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(lantern_async_task);
PG_FUNCTION_INFO_V1(lantern_cancel_task);
PG_FUNCTION_INFO_V1(lantern_cancel_all_async_tasks);
PG_FUNCTION_INFO_V1(lantern_wait_task);
PG_FUNCTION_INFO_V1(lantern_active_tasks);
}

namespace lantern
{

const char *
text_arg_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

// async_task is the INSERT into lantern.tasks, so it needs the same privilege.
static void
check_insert_privilege()
{
	Oid nsp = get_namespace_oid("lantern", false);
	Oid tasks = get_relname_relid("tasks", nsp);
	if (!OidIsValid(tasks))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("foreign table lantern.tasks does not exist")));
	AclResult acl = pg_class_aclcheck(tasks, GetUserId(), ACL_INSERT);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FOREIGN_TABLE, "tasks");
}

} // namespace lantern

using namespace lantern;

extern "C" Datum
lantern_async_task(PG_FUNCTION_ARGS)
{
	require_preloaded();
	check_insert_privilege();
	NewTask task = {};
	task.query = text_arg_or_null(fcinfo, 0);
	task.job_name = text_arg_or_null(fcinfo, 1);
	// Declared with two arguments by 0.1.0: PG_NARGS says what was given.
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		task.run_at = PG_GETARG_TIMESTAMPTZ(2);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		task.max_runtime = PG_GETARG_INTERVAL_P(3);
	task.keep_result = PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	Store store;
	store_open(&store, RowExclusiveLock);
	int64 jobid = submit_task(&store, task, nullptr, nullptr);
	store_close(&store, RowExclusiveLock);
	PG_RETURN_INT64(jobid);
}

extern "C" Datum
lantern_cancel_task(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cancel_task_internal(PG_GETARG_INT64(0), false));
}

extern "C" Datum
lantern_cancel_all_async_tasks(PG_FUNCTION_ARGS)
{
	cancel_all_tasks();
	PG_RETURN_VOID();
}

// Blocks until the task ends or the timeout passes; returns its status then.
extern "C" Datum
lantern_wait_task(PG_FUNCTION_ARGS)
{
	require_preloaded();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	int64 jobid = PG_GETARG_INT64(0);
	long timeout_ms = -1;
	if (!PG_ARGISNULL(1)) {
		Interval *iv = PG_GETARG_INTERVAL_P(1);
		double secs = iv->time / 1e6 + (iv->day + iv->month * 30.0) * 86400.0;
		if (secs < 0)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("timeout must not be negative")));
		timeout_ms = static_cast<long>(Min(secs * 1000.0, static_cast<double>(LONG_MAX / 2)));
	}
	Store store;
	store_open(&store, AccessShareLock);
	Oid relid = store_relid(&store);
	board_acquire(LW_SHARED);
	int own_index = board_find(relid, jobid);
	bool own_uncommitted = own_index >= 0 && board_slot(own_index)->state == SlotState::Reserved &&
	                       board_slot(own_index)->owner_pid == MyProcPid;
	board_release();
	if (own_uncommitted)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("cannot wait for task %lld in the transaction that submitted it", (long long)jobid),
		                errdetail("The task runs only after this transaction commits."),
		                errhint("Commit first, then call lantern.wait_task.")));
	HeapTuple row = store_fetch(&store, jobid, GetActiveSnapshot());
	TaskRow r = {};
	if (row != nullptr)
		store_read_row(&store, row, &r);
	Visibility vis;
	visibility_init(&vis);
	if (row == nullptr || !visibility_check(&vis, r.run_as))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
	// A task this transaction left in the store (the board was full).
	if (!r.ended && TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(row->t_data)))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("cannot wait for task %lld in the transaction that submitted it", (long long)jobid),
		                errdetail("The task runs only after this transaction commits."),
		                errhint("Commit first, then call lantern.wait_task.")));
	store_close(&store, AccessShareLock); // hold no lock while sleeping

	TimestampTz start = GetCurrentTimestamp();
	const char *live_status = nullptr;
	ConditionVariablePrepareToSleep(board_cv());
	for (;;) {
		board_acquire(LW_SHARED);
		int index = board_find(relid, jobid);
		SlotState state = index >= 0 ? board_slot(index)->state : SlotState::Free;
		int task_pid = index >= 0 ? board_slot(index)->backend_pid : 0;
		board_release();
		bool in_store = false;
		char *store_status = nullptr;
		if (index < 0) {
			// Not on the board: ended, or waiting in the store for a slot.
			store_open(&store, AccessShareLock);
			HeapTuple now_row = store_fetch(&store, jobid, GetLatestSnapshot());
			TaskRow now = {};
			if (now_row != nullptr)
				store_read_row(&store, now_row, &now);
			in_store = now_row != nullptr && !now.ended;
			if (in_store)
				store_status = store_row_status(&store, now_row);
			store_close(&store, AccessShareLock);
			if (!in_store) {
				live_status = nullptr;
				break;
			}
		}
		live_status = in_store ? (store_status != nullptr ? store_status : "queued") : slot_state_status(state);
		long waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (timeout_ms >= 0 && waited >= timeout_ms)
			break;
		// A task blocked by this very session (CREATE INDEX CONCURRENTLY waits
		// for our snapshot) would never end while we wait: return instead.
		if (state == SlotState::Running && task_pid != 0) {
			ArrayType *blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids, Int32GetDatum(task_pid)));
			Datum *elems;
			int nelems;
			deconstruct_array(blockers, INT4OID, 4, true, TYPALIGN_INT, &elems, nullptr, &nelems);
			bool blocked_by_us = false;
			for (int i = 0; i < nelems; i++)
				blocked_by_us |= DatumGetInt32(elems[i]) == MyProcPid;
			if (blocked_by_us) {
				ereport(NOTICE,
				        (errmsg("task %lld is waiting for this session to finish its statement", (long long)jobid),
				         errhint("Call lantern.wait_task again in a new statement, or poll lantern.tasks.")));
				break;
			}
		}
		long sleep_ms = 1000; // wake up now and then to look for the case above
		if (timeout_ms >= 0)
			sleep_ms = Min(sleep_ms, timeout_ms - waited);
		ConditionVariableTimedSleep(board_cv(), sleep_ms, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	if (live_status == nullptr) {
		// Ended: its outcome is committed; read it with a fresh snapshot.
		store_open(&store, AccessShareLock);
		HeapTuple now_row = store_fetch(&store, jobid, GetLatestSnapshot());
		live_status = now_row == nullptr ? nullptr : store_row_status(&store, now_row);
		store_close(&store, AccessShareLock);
	}
	if (live_status == nullptr)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(live_status));
}

// The board's view of this database's active tasks that the caller may see:
// the live part of lantern.task_progress.
extern "C" Datum
lantern_active_tasks(PG_FUNCTION_ARGS)
{
	require_preloaded();
	Store store;
	store_open(&store, AccessShareLock);
	Oid relid = store_relid(&store);
	store_close(&store, AccessShareLock);

	int n = 0;
	board_acquire(LW_SHARED);
	TaskSlot *copies = static_cast<TaskSlot *>(palloc(sizeof(TaskSlot) * Max(1, board_active_count())));
	board_each_active([&](int, const TaskSlot *s) {
		if (s->state != SlotState::Reserved && s->dboid == MyDatabaseId && s->store_relid == relid)
			memcpy(&copies[n++], s, sizeof(TaskSlot));
	});
	board_release();

	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	Visibility vis;
	visibility_init(&vis);
	for (int i = 0; i < n; i++) {
		const TaskSlot &s = copies[i];
		if (!visibility_check(&vis, s.run_as))
			continue;
		bool running = s.state == SlotState::Running;
		Datum values[6];
		bool nulls[6] = {};
		values[0] = Int64GetDatum(s.jobid);
		values[1] = CStringGetTextDatum(slot_state_status(s.state));
		values[2] = Int32GetDatum(s.backend_pid);
		nulls[2] = s.backend_pid == 0;
		values[3] = Int32GetDatum(s.stmt_index);
		values[4] = Int32GetDatum(s.stmt_count);
		nulls[3] = nulls[4] = !running;
		values[5] = TimestampTzGetDatum(s.run_started_at);
		nulls[5] = !running || s.run_started_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum)0;
}
