// The store (store.cpp): the durable record of every task, the table
// _lantern_fdw.task_log of the current database. Every read and write of it
// goes through here. Include after pg.hpp.
#pragma once

namespace lantern {

// The columns of task_log; lantern.tasks shows a prefix of them.
enum StoreColumn {
	Col_jobid = 1,
	Col_query,
	Col_pg_cron_job_name,
	Col_job_name,
	Col_username,
	Col_started_at,
	Col_duration,
	Col_status,
	Col_error_message,
	Col_run_as,
	Col_login_role,
	Col_board_id,
	// issue 11 (the queue); absent from a store not yet updated to 0.2.0
	Col_run_at,
	Col_max_runtime,
	Col_run_started_at,
	// issue 12 (task output)
	Col_keep_result,
	Store_natts = Col_keep_result
};

struct Store {
	Relation rel;
	Relation pkey;
};

// The store's schema, or InvalidOid if missing_ok and it does not exist.
Oid store_namespace(bool missing_ok);
// The OID of the current database's task_log, or InvalidOid.
Oid store_find_relid();
// Opens the store of the current database; errors if the extension is missing.
void store_open(Store *s, LOCKMODE mode);
void store_close(Store *s, LOCKMODE mode);
Oid store_relid(const Store *s);
// The planner's estimate of the store's size (reltuples is -1 if unknown).
void store_estimate_size(const Store *s, double *tuples, BlockNumber *pages);
TupleDesc store_desc(const Store *s);

// The fields of a row that its readers decide on.
struct TaskRow {
	int64 jobid;
	Oid run_as;
	Oid login_role;
	TimestampTz started_at;
	bool ended; // duration is set: the outcome is recorded
	uint64 board_id;
	TimestampTz run_at;	   // 0: none
	int64 max_runtime_us; // 0: none
	bool keep_result; // the rows of the last statement are kept
};
// An interval as microseconds (a month counts 30 days).
int64 interval_usecs(const Interval *iv);
void store_read_row(const Store *s, HeapTuple row, TaskRow *out);
// The query and status columns of a row, palloc'd (status: NULL if null).
char *store_row_query(const Store *s, HeapTuple row);
char *store_row_status(const Store *s, HeapTuple row);

// Fetches the current row of jobid (a copy) with snap, or NULL.
HeapTuple store_fetch(Store *s, int64 jobid, Snapshot snap);
// Scans the rows visible to snap; only the row of *jobid if jobid is not
// NULL. The scan lives in the current memory context.
SysScanDesc store_begin_scan(Store *s, Snapshot snap, const int64 *jobid);
HeapTuple store_scan_next(SysScanDesc scan);
// Scans the rows visible to snap whose jobid is at least from, in jobid order.
SysScanDesc store_begin_scan_from(Store *s, Snapshot snap, int64 from);
void store_end_scan(SysScanDesc scan);
// The rows that wait in the store, through their partial indexes: queued ones
// (board id 0) whose jobid is at least from, in jobid order; scheduled ones
// in run_at order. NULL if the store has no such index (a database not yet
// updated to 0.2.0). A row returned may have changed since: check it.
enum class WaitingRows { Queued, Scheduled };
SysScanDesc store_begin_scan_waiting(Store *s, Snapshot snap, WaitingRows which, int64 from);

// A new task's row, status queued.
// The board id of a task that waits in the store, not on the board.
constexpr uint64 kNotOnBoard = 0;

struct NewRow {
	int64 jobid;
	const char *query;
	const char *job_name; // NULL for none
	const char *username;
	TimestampTz started_at;
	Oid run_as;
	Oid login_role;
	uint64 board_id;
	bool scheduled;			  // status scheduled (run_at in the future)
	TimestampTz run_at;		  // 0: none
	const Interval *max_runtime; // NULL: none
	bool keep_result;
};
void store_insert(Store *s, const NewRow &row);
// Record_start: status running, and when the first statement began.
void store_mark_running(Store *s, HeapTuple old);
// A loader puts the row's task on the board: its board id, status queued.
void store_set_queued(Store *s, HeapTuple old, uint64 board_id);
// Writes the final outcome of a task (status, error, duration up to now),
// and queues the lantern_tasks notification of it.
void store_record_end(Store *s, HeapTuple old, const char *status, const char *error);
// Deletes a row and its output, waiting for a concurrent writer; false if it
// was gone first.
bool store_delete(Store *s, HeapTuple row);
// Deletes up to limit ended rows whose end lies before cutoff (rows of active
// tasks are never touched); returns how many.
int store_delete_ended_before(Store *s, TimestampTz cutoff, int limit);

// Serializes the writers of a store's rows of an earlier server life
// (recovery, and a cancel of a row recovery has not reached), until commit.
bool store_lock_earlier_rows(Oid store_relid, bool wait);

// What one statement of a task said: a row of _lantern_fdw.task_output.
struct OutputRow {
	int64 jobid;
	int32 statement; // 1-based
	const char *query;
	const char *command; // NULL: the statement failed
	bool has_rows;
	int64 rows;
	TimestampTz started_at;
	int64 duration_us;
	const char *messages; // NULL for none
	Datum result;		  // jsonb, or 0 for none
	bool truncated;
};
// Writes one statement's output; errors if the extension's version has no
// output table.
void store_insert_output(const OutputRow &row);

} // namespace lantern
