// Submitting tasks (submit.cpp). Include after pg.hpp and store.hpp.
#pragma once

namespace lantern {

struct NewTask {
	const char *query; // not null
	const char *job_name;
	const char *username; // NULL = current_user
	bool has_started_at;
	TimestampTz started_at;
	bool has_jobid;
	int64 jobid;
	TimestampTz run_at;			 // 0: none (async_task's run_at)
	const Interval *max_runtime; // NULL: none
	bool keep_result; // keep the rows of the last statement
};
// Validates, reserves a board slot owned by the current transaction, writes
// the durable row. Returns the jobid. Output: the values as stored (for
// RETURNING).
int64 submit_task(Store *store, const NewTask &task, TimestampTz *started_at_out, const char **username_out);
Oid task_sequence_oid(); // lantern.tasks_jobid_seq
// Checks the raw syntax of query; errors with the position inside it.
List *parse_task_query(const char *query);
// Recovery and loaders: puts a queued task of an earlier server life, or one
// that waits in the store, on the board in the current transaction (or fails
// it if its role is gone: Done). BoardFull when the board is full; RoleAtCap
// when per_role_queue_cap > 0 and its role already has that many slots
// waiting on the board (board_reserve).
enum class Requeue { Done, BoardFull, RoleAtCap };
Requeue requeue_task(Store *store, HeapTuple row, int per_role_queue_cap);

} // namespace lantern
