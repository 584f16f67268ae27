// Recording: the functions the executor calls through a task's own
// connection to mark it running (returning its statements, split by the
// server's parser) and to record its outcome. Only the backend serving the
// task's connection, while the board says so, may call them.
#include "pg.hpp"
#include "board.hpp"
#include "module.hpp"
#include "sql_api.hpp"
#include "store.hpp"
#include "submit.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(lantern_record_start);
PG_FUNCTION_INFO_V1(lantern_record_end);
PG_FUNCTION_INFO_V1(lantern_record_output);
}

namespace lantern {

// The slot of a task that the executor has moved to `step`, for the backend
// serving that task's connection; errors for anybody else.
static void
check_recording_caller(Oid store_relid, int64 jobid, SlotState step, const char *what)
{
	board_acquire(LW_SHARED);
	int index = board_find(store_relid, jobid);
	bool ok = index >= 0 && board_slot(index)->state == step && board_slot(index)->backend_pid == MyProcPid;
	board_release();
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("only the lantern_fdw executor may record the %s of task %lld", what, (long long)jobid)));
}

// How record_start and record_end begin: opens the store, checks the caller
// (see check_recording_caller) and fetches the task's row, NULL if none.
static HeapTuple
open_for_recording(Store *store, int64 jobid, SlotState step, const char *what)
{
	require_preloaded();
	store_open(store, RowExclusiveLock);
	check_recording_caller(store_relid(store), jobid, step, what);
	return store_fetch(store, jobid, GetLatestSnapshot());
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

// Called by the executor through the task's own connection: marks the task
// running and returns its statements, split by the server's parser.
extern "C" Datum
lantern_record_start(PG_FUNCTION_ARGS)
{
	int64 jobid = PG_GETARG_INT64(0);
	Store store;
	HeapTuple row = open_for_recording(&store, jobid, SlotState::Starting, "start");
	if (row == nullptr)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
	char *query = store_row_query(&store, row);
	store_mark_running(&store, row);
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
	Store store;
	HeapTuple row = open_for_recording(&store, jobid, SlotState::Ending, "end");
	const char *status = text_arg_or_null(fcinfo, 1);
	if (status == nullptr ||
		(strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0 && strcmp(status, "canceled") != 0))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid final status \"%s\"", status ? status : "")));
	const char *error = text_arg_or_null(fcinfo, 2);
	if (row != nullptr)
		store_record_end(&store, row, status, error);
	store_close(&store, RowExclusiveLock);
	PG_RETURN_VOID();
}

// Called by the executor through the task's connection, in the transaction
// of record_end and before it: writes what one statement said.
// Arguments: jobid, statement, query, command, rows, started_at (microseconds
// since 2000-01-01 UTC), duration (microseconds), messages, result, truncated.
extern "C" Datum
lantern_record_output(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(5) || PG_ARGISNULL(6) ||
		PG_ARGISNULL(9))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("invalid task output")));
	int64 jobid = PG_GETARG_INT64(0);
	require_preloaded();
	check_recording_caller(store_find_relid(), jobid, SlotState::Ending, "output");
	OutputRow row;
	row.jobid = jobid;
	row.statement = PG_GETARG_INT32(1);
	if (row.statement < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("statement numbers start at 1")));
	row.query = text_arg_or_null(fcinfo, 2);
	row.command = text_arg_or_null(fcinfo, 3);
	row.has_rows = !PG_ARGISNULL(4);
	row.rows = row.has_rows ? PG_GETARG_INT64(4) : 0;
	row.started_at = PG_GETARG_INT64(5);
	row.duration_us = PG_GETARG_INT64(6);
	row.messages = text_arg_or_null(fcinfo, 7);
	row.result = PG_ARGISNULL(8) ? 0 : PG_GETARG_DATUM(8);
	row.truncated = PG_GETARG_BOOL(9);
	store_insert_output(row);
	PG_RETURN_VOID();
}
