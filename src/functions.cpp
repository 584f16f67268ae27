// SQL-callable functions: the public API and the executor's recording calls.
#include "pg.hpp"
#include "lantern.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(lantern_async_task);
PG_FUNCTION_INFO_V1(lantern_cancel_task);
PG_FUNCTION_INFO_V1(lantern_cancel_all_async_tasks);
PG_FUNCTION_INFO_V1(lantern_wait_task);
PG_FUNCTION_INFO_V1(lantern_record_start);
PG_FUNCTION_INFO_V1(lantern_record_end);
PG_FUNCTION_INFO_V1(lantern_active_tasks);
}

namespace lantern {

static const char *
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

// The slot of a task that the executor has moved to `step`, for the backend
// serving that task's connection; errors for anybody else.
static void
check_recording_caller(const Store &store, int64 jobid, SlotState step, const char *what)
{
	LWLockAcquire(board_lock(), LW_SHARED);
	int index = board_find(RelationGetRelid(store.rel), jobid);
	bool ok = index >= 0 && board_slot(index)->state == step && board_slot(index)->backend_pid == MyProcPid;
	LWLockRelease(board_lock());
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("only the lantern_fdw executor may record the %s of task %lld", what, (long long)jobid)));
}

// The first position at or after start that is not white space or a comment
// (what separates a statement from the previous one), so that the error
// positions of a statement count from its first token, as psql's do.
static int
skip_space_and_comments(const char *q, int start, int end)
{
	while (start < end) {
		if (isspace(static_cast<unsigned char>(q[start]))) {
			start++;
		} else if (start + 1 < end && q[start] == '-' && q[start + 1] == '-') {
			while (start < end && q[start] != '\n')
				start++;
		} else if (start + 1 < end && q[start] == '/' && q[start + 1] == '*') {
			int depth = 0; // C-style comments nest in SQL
			do {
				if (start + 1 < end && q[start] == '/' && q[start + 1] == '*') {
					depth++;
					start += 2;
				} else if (start + 1 < end && q[start] == '*' && q[start + 1] == '/') {
					depth--;
					start += 2;
				} else {
					start++;
				}
			} while (depth > 0 && start < end);
		} else {
			break;
		}
	}
	return start;
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
	Oid store_relid = RelationGetRelid(store.rel);
	LWLockAcquire(board_lock(), LW_SHARED);
	int own_index = board_find(store_relid, jobid);
	bool own_uncommitted = own_index >= 0 && board_slot(own_index)->state == SlotState::Reserved &&
						   board_slot(own_index)->owner_pid == MyProcPid;
	LWLockRelease(board_lock());
	if (own_uncommitted)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("cannot wait for task %lld in the transaction that submitted it", (long long)jobid),
						errdetail("The task runs only after this transaction commits."),
						errhint("Commit first, then call lantern.wait_task.")));
	HeapTuple row = store_fetch(&store, jobid, GetActiveSnapshot());
	bool isnull;
	Visibility vis;
	visibility_init(&vis);
	if (row == nullptr ||
		!visibility_check(&vis, DatumGetObjectId(heap_getattr(row, Col_run_as, RelationGetDescr(store.rel), &isnull))))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
	store_close(&store, AccessShareLock); // hold no lock while sleeping

	TimestampTz start = GetCurrentTimestamp();
	const char *live_status = nullptr;
	ConditionVariablePrepareToSleep(board_cv());
	for (;;) {
		LWLockAcquire(board_lock(), LW_SHARED);
		int index = board_find(store_relid, jobid);
		SlotState state = index >= 0 ? board_slot(index)->state : SlotState::Free;
		int task_pid = index >= 0 ? board_slot(index)->backend_pid : 0;
		LWLockRelease(board_lock());
		if (index < 0) {
			live_status = nullptr;
			break;
		}
		live_status = slot_state_status(state);
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
				ereport(NOTICE, (errmsg("task %lld is waiting for this session to finish its statement", (long long)jobid),
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
		Datum d = now_row ? heap_getattr(now_row, Col_status, RelationGetDescr(store.rel), &isnull) : (Datum)0;
		live_status = (now_row == nullptr || isnull) ? nullptr : TextDatumGetCString(d);
		store_close(&store, AccessShareLock);
	}
	if (live_status == nullptr)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(live_status));
}

// Called by the executor through the task's own connection: marks the task
// running and returns its statements, split by the server's parser.
extern "C" Datum
lantern_record_start(PG_FUNCTION_ARGS)
{
	int64 jobid = PG_GETARG_INT64(0);
	require_preloaded();
	Store store;
	store_open(&store, RowExclusiveLock);
	check_recording_caller(store, jobid, SlotState::Starting, "start");
	HeapTuple row = store_fetch(&store, jobid, GetLatestSnapshot());
	if (row == nullptr)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
	bool isnull;
	char *query = TextDatumGetCString(heap_getattr(row, Col_query, RelationGetDescr(store.rel), &isnull));
	store_set_status(&store, row, "running");
	store_close(&store, RowExclusiveLock);

	char appname[64];
	snprintf(appname, sizeof(appname), "lantern_fdw task %lld", (long long)jobid);
	SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	List *stmts = parse_task_query(query);
	int len = strlen(query);
	ListCell *lc;
	foreach (lc, stmts) {
		RawStmt *rs = lfirst_node(RawStmt, lc);
		int end = rs->stmt_len > 0 ? rs->stmt_location + rs->stmt_len : len;
		int start = skip_space_and_comments(query, rs->stmt_location, end);
		Datum value = PointerGetDatum(cstring_to_text_with_len(query + start, end - start));
		bool null = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &null);
	}
	return (Datum)0;
}

// Called by the executor through the task's connection once the outcome is
// known: writes it and tells LISTENers on channel lantern_tasks.
extern "C" Datum
lantern_record_end(PG_FUNCTION_ARGS)
{
	int64 jobid = PG_GETARG_INT64(0);
	require_preloaded();
	Store store;
	store_open(&store, RowExclusiveLock);
	check_recording_caller(store, jobid, SlotState::Ending, "end");
	const char *status = text_arg_or_null(fcinfo, 1);
	if (status == nullptr ||
		(strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0 && strcmp(status, "canceled") != 0))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid final status \"%s\"", status ? status : "")));
	const char *error = text_arg_or_null(fcinfo, 2);
	HeapTuple row = store_fetch(&store, jobid, GetLatestSnapshot());
	if (row != nullptr)
		store_record_end(&store, row, status, error);
	store_close(&store, RowExclusiveLock);
	PG_RETURN_VOID();
}

// The board's view of this database's active tasks that the caller may see:
// the live part of lantern.task_progress.
extern "C" Datum
lantern_active_tasks(PG_FUNCTION_ARGS)
{
	require_preloaded();
	Store store;
	store_open(&store, AccessShareLock);
	Oid relid = RelationGetRelid(store.rel);
	store_close(&store, AccessShareLock);

	int n = 0;
	LWLockAcquire(board_lock(), LW_SHARED);
	TaskSlot *copies = static_cast<TaskSlot *>(palloc(sizeof(TaskSlot) * Max(1, board_active_count())));
	for (int i = board_first_active(); i >= 0; i = board_next_active(i)) {
		const TaskSlot *s = board_slot(i);
		if (s->state != SlotState::Free && s->state != SlotState::Reserved && s->dboid == MyDatabaseId &&
			s->store_relid == relid)
			memcpy(&copies[n++], s, sizeof(TaskSlot));
	}
	LWLockRelease(board_lock());

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
