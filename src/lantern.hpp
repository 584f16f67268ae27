// Declarations shared by the parts of lantern_fdw. Include after pg.hpp.
#pragma once

#include <stdint.h>

namespace lantern {

// ---- settings (module.cpp) ----
extern int guc_max_tasks;
extern int guc_max_parallel_tasks;
extern char *guc_host;
extern char *guc_connection_options;
extern int guc_idle_connection_timeout_ms;
extern int guc_task_retention_s;

// Raises the "not preloaded" error unless the board exists.
void require_preloaded();

// ---- board (board.cpp): shared memory state of active tasks ----

// The life of a board slot. Which process moves a slot out of each state:
//   Reserved      -> Queued (submitter commits) | Free (submitter aborts)
//                    | Canceling (canceled in its own transaction)
//   Queued        -> Starting (executor picks it) | Canceling (cancel_task)
//                    | Free (DROP EXTENSION commits; a maintenance worker
//                    finds its store gone)
//   Canceling     -> Free (canceler commits, row says canceled)
//                    | Queued or Reserved (canceler aborts: as before)
//   Starting      -> Running | Ending | RecordPending (executor)
//                    | Queued (the server refuses connections for now; an
//                    executor restart) | Free (the task's store is gone)
//   Running       -> Ending | RecordPending (executor, or its successor)
//   Ending        -> Free (executor, after the outcome is committed)
//                    | RecordPending
//   RecordPending -> Free (a maintenance worker wrote the outcome, or the
//                    executor gave it up)
enum class SlotState : uint8_t { Free = 0, Reserved, Queued, Canceling, Starting, Running, Ending, RecordPending };

// The status column value that an active slot in state s shows.
const char *slot_state_status(SlotState s);

enum class Outcome : uint8_t { None = 0, Succeeded, Failed, Canceled };
const char *outcome_name(Outcome o);

constexpr int kMessageLen = 1024;

struct TaskSlot {
	SlotState state;
	bool cancel_requested;	  // cancel_task asked; executor acts on it
	bool cancel_sent;		  // executor signalled the backend
	Outcome outcome;		  // Ending, RecordPending: what to record
	bool has_message;		  // ... and whether board_message() has its text
	uint32 generation;		  // bumped each time the slot is taken: detects reuse
	Oid dboid;
	Oid store_relid;		  // the store of the extension that queued it
	int64 jobid;
	Oid run_as;				  // role the task runs as (username)
	Oid login_role;			  // session user of the submitter
	TransactionId owner_xid;  // Reserved/Canceling: the owning transaction
	int owner_pid;			  // Reserved/Canceling: the owning backend
	int backend_pid;		  // Starting/Running/Ending: the task connection's backend
	uint64 queue_seq;		  // FIFO order among Queued slots
	TimestampTz submitted_at; // the started_at column
	TimestampTz run_started_at;
	int stmt_index;	 // 1-based statement being run
	int stmt_count;
	NameData connect_as; // login role of the task connection
	NameData set_role;	 // role to SET ROLE to after connecting ("" = none)
	// Links of the board's lists (slot indexes, -1 = none): the free list,
	// the list of active (non-free) slots, and the FIFO of queued slots.
	int free_next;
	int active_prev, active_next;
	int queue_prev, queue_next;
};

// A copy of a slot with the coordinates needed to act on it later.
struct SlotRef {
	int index;
	uint32 generation;
};

struct Board;
Size board_shmem_size();
void board_shmem_startup();
bool board_attached();

LWLock *board_lock();
TaskSlot *board_slot(int index); // caller holds the lock
int board_nslots();
ConditionVariable *board_cv();
uint64 board_id();
void board_wake_executor();
void board_set_executor(Latch *latch, int pid);
// Recovery of an earlier server life's tasks: needed once per board lifetime,
// done when every database has been checked (an executor that dies before
// that has a successor start over; recovery is idempotent).
bool board_recovery_needed();
void board_recovery_done();
// A recovery worker says it has recovered its database; the executor checks.
void board_ack_recovery(Oid dboid);
bool board_take_recovery_ack(Oid dboid);
void board_request_close_idle();
uint32 board_close_idle_requests();

// Finds the slot of a task of the current database's store; caller holds
// the lock. -1 if none. Constant time (a shared hash table).
int board_find(Oid store_relid, int64 jobid);

// Submitting: returns the slot index or -1 when the board is full.
int board_reserve(const TaskSlot &init);

// Every state change goes through here (exclusive lock held): it keeps the
// lists and the index in step. Free returns the slot to the free list.
void board_set_state(int index, SlotState state);
// The active (non-free) slots, in no particular order: for (i = first; i >= 0; i = next(i)).
int board_first_active();
int board_next_active(int index);
// The queued slot that has waited longest, or -1.
int board_queue_head();
int board_record_pending_count();
// Ending, RecordPending: the error_message to record ("" for none; at most
// kMessageLen - 1 bytes). Caller holds the lock (exclusively to set it).
const char *board_message(int index);
void board_set_message(int index, const char *message);
// Next FIFO position; caller holds the lock exclusively.
uint64 board_next_queue_seq();
int board_active_count();

// ---- store (store.cpp): the durable record, _lantern_fdw.task_log ----
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
	Store_natts = Col_board_id
};

struct Store {
	Relation rel;
	Relation pkey;
};
// Opens the store of the current database; errors if the extension is missing.
void store_open(Store *s, LOCKMODE mode);
void store_close(Store *s, LOCKMODE mode);
Oid store_namespace(bool missing_ok);
// Fetches the current row of jobid (a copy), or NULL.
HeapTuple store_fetch(Store *s, int64 jobid, Snapshot snap);
// Writes the final outcome of a task (status, error, duration up to now).
void store_record_end(Store *s, HeapTuple old, const char *status, const char *error);
void store_set_status(Store *s, HeapTuple old, const char *status);
// Deletes a row, waiting for a concurrent writer; false if it was gone first.
bool store_delete(Store *s, ItemPointer tid);
// True while the task of this row has not ended.
bool duration_is_null(HeapTuple row, TupleDesc desc);

// ---- submit (submit.cpp) ----
struct NewTask {
	const char *query; // not null
	const char *job_name;
	const char *username; // NULL = current_user
	bool has_started_at;
	TimestampTz started_at;
	bool has_jobid;
	int64 jobid;
};
// Validates, writes the durable row, reserves a board slot. Returns the jobid.
// Output: the values as stored (for RETURNING).
int64 submit_task(Store *store, const NewTask &task, TimestampTz *started_at_out, const char **username_out);
Oid task_sequence_oid(); // lantern.tasks_jobid_seq
// Checks the raw syntax of query; errors with the position inside it.
List *parse_task_query(const char *query);

// cancel_task body; returns true when the task was active.
bool cancel_task_internal(int64 jobid, bool quiet);
// Cancels every active task of this database that the caller may cancel.
void cancel_all_tasks();
// Visibility of a task's rows for the current user.
struct Visibility {
	bool see_all;
};
void visibility_init(Visibility *v);
bool visibility_check(const Visibility *v, Oid run_as);
void xact_register_callbacks();
// At commit, the tasks of a dropped store leave the board (queued ones never run).
void forget_store_at_commit(Oid store_relid);
bool requeue_task(Store *store, HeapTuple row);
// Serializes the writers of a store's rows of an earlier server life
// (recovery, and cancel of a row recovery has not reached), until commit.
bool lock_earlier_rows(Oid store_relid, bool wait);

// ---- workers ----
extern "C" {
PGDLLEXPORT void lantern_executor_main(Datum arg);
PGDLLEXPORT void lantern_maintenance_main(Datum arg);
}
void register_executor();
// Starts the maintenance worker of a database; returns false if no worker slot.
bool start_maintenance_worker(Oid dboid, bool recover, BackgroundWorkerHandle **handle);

} // namespace lantern
