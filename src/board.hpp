// The task board (board.cpp): the shared memory state of every active task.
// The board owns its state machine: every slot transition goes through
// board_transition, which checks it against the legal transitions below,
// and every walk over the active slots goes through board_each_active.
// Include after pg.hpp.
#pragma once

#include <stdint.h>

namespace lantern {

// The life of a board slot; docs/design.md ("Slot states") draws it.
enum class SlotState : uint8_t { Free = 0, Reserved, Queued, Canceling, Starting, Running, Ending, RecordPending };

// The legal transitions, and which process makes each:
//   Free          -> Reserved (a submitter, or recovery: board_reserve)
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
bool slot_transition_legal(SlotState from, SlotState to);
const char *slot_state_name(SlotState s);
// The status column value that an active slot in state s shows.
const char *slot_state_status(SlotState s);

enum class Outcome : uint8_t { None = 0, Succeeded, Failed, Canceled };
const char *outcome_name(Outcome o);

// The error_message of a canceled task.
constexpr const char *kCanceledByUser = "Canceled by user";

constexpr int kMessageLen = 1024;

struct TaskSlot {
	SlotState state;
	bool cancel_requested;	  // cancel_task asked; executor acts on it
	Outcome outcome;		  // Ending, RecordPending: what to record
	bool has_message;		  // ... and whether board_message() has its text
	uint32 generation;		  // bumped each time the slot is taken: detects reuse
	Oid dboid;
	Oid store_relid;		  // the store of the extension that queued it
	int64 jobid;
	Oid run_as;				  // role the task runs as (username)
	Oid login_role;			  // session user of the submitter
	TransactionId owner_xid;  // Canceling: the owning transaction
	int owner_pid;			  // Reserved/Canceling: the owning backend
	int backend_pid;		  // Starting/Running/Ending: the task connection's backend
	uint64 queue_seq;		  // FIFO order among Queued slots
	TimestampTz submitted_at; // the started_at column
	TimestampTz run_started_at;
	int64 max_runtime_us; // the task's max_runtime (0: the default applies)
	int stmt_index;	 // 1-based statement being run
	int stmt_count;
	NameData connect_as; // login role of the task connection
	NameData set_role;	 // role to SET ROLE to after connecting ("" = none)
	bool keep_result;	 // keep the rows of the last statement (issue 12)
	// Links of the board's lists (slot indexes, -1 = none): the free list,
	// the list of active (non-free) slots, and the FIFO of queued slots.
	int free_next;
	int active_prev, active_next;
	int queue_prev, queue_next;
};

// The coordinates of a slot, to find the same task in it later.
struct SlotRef {
	int index;
	uint32 generation;
};

// ---- life of the board ----
Size board_shmem_size();
void board_shmem_startup(); // from shmem_startup_hook
bool board_attached();
int board_nslots();
uint64 board_id(); // differs between board lifetimes (server starts)

// ---- the lock: one LWLock guards every slot, list and field ----
void board_acquire(LWLockMode mode);
void board_release();

// ---- slots (lock held; exclusively to change them) ----
TaskSlot *board_slot(int index);
// The slot of ref if it still holds the same task (and is not free), else NULL.
TaskSlot *board_slot_of(const SlotRef &ref);
// The slot of a task of the current database's store, or -1. Constant time
// (a shared hash table).
int board_find(Oid store_relid, int64 jobid);
// Takes a free slot for a new task, Reserved, as init describes it; takes
// the lock itself. Returns its index, kBoardFull when the board is full, or
// kRoleAtCap when per_role_queue_cap > 0 and the task's role (run_as)
// already has that many slots waiting on the board (Reserved, Queued,
// Canceling).
constexpr int kBoardFull = -1;
constexpr int kRoleAtCap = -2;
int board_reserve(const TaskSlot &init, uint32 *generation, int per_role_queue_cap);
// Every state change of a slot (exclusive lock held). Raises an ERROR for a
// transition that is not legal. It keeps the lists and the index in step,
// and the fields each state implies: a slot queued by its submitter gets the
// next FIFO number, a queued slot has no owner and no backend, a freed slot
// goes back to the free list.
void board_transition(int index, SlotState to);
// The head of the queue (the queued slot that has waited longest), or -1.
int board_queue_head();
// The queued slot after index in FIFO order, or -1.
int board_queue_next(int index);
// The first queued slot, in FIFO order, whose role runs fewer than
// per_role_cap tasks (Starting, Running, Ending); the head if the cap is 0.
int board_queue_pick(int per_role_cap);
int board_active_count();
int board_record_pending_count();
// Ending, RecordPending: the error_message to record ("" for none; at most
// kMessageLen - 1 bytes).
const char *board_message(int index);
void board_set_message(int index, const char *message);

int board_first_active_(); // for board_each_active
int board_next_active_(int index);

// Calls fn(index, slot) for every active (non-free) slot, in no particular
// order; fn may free the slot it is given. Lock held.
template <typename Fn>
void
board_each_active(Fn &&fn)
{
	for (int i = board_first_active_(), next; i >= 0; i = next) {
		next = board_next_active_(i);
		fn(i, board_slot(i));
	}
}

// ---- waking and waiting (no lock needed) ----
// Broadcast whenever a slot is freed, and (while
// lantern_fdw.max_parallel_tasks_per_role is set) whenever the executor
// starts a queued task.
ConditionVariable *board_cv();
void board_wake_executor();
void board_set_executor(Latch *latch);

// ---- flags between the executor, its workers and backends (take the lock) ----
// Recovery of an earlier server life's tasks: needed once per board lifetime,
// done when every database has been checked (an executor that dies before
// that has a successor start over; recovery is idempotent).
bool board_recovery_needed();
void board_recovery_done();
// A recovery worker says it has recovered its database; the executor checks.
void board_ack_recovery(Oid dboid);
bool board_take_recovery_ack(Oid dboid);
// Asks the executor to close its idle connections.
void board_request_close_idle();
uint32 board_close_idle_requests();
// A submitter's first task in a transaction asks the executor to open a
// connection for the task's database and login role now, so that the
// backend starts while the transaction is still open (docs/design.md,
// "Connections"). Takes the lock; wakes the executor.
constexpr int kConnectWishes = 16;
void board_wish_connection(int index, uint32 generation);
// The wishes made since *seen (at most the last kConnectWishes), into out
// (room for kConnectWishes); advances *seen. Returns how many.
int board_take_wishes(uint64 *seen, SlotRef *out);

// ---- the queue beyond the board ----
// A submission that finds the board full (or its database's queue already
// in the store) leaves its task in the store only, with board id 0; a
// loader (a maintenance worker) brings such rows onto the board as slots
// free up, in jobid order. These calls take the lock, but for those marked.
constexpr int kMaxWaitingDbs = 256;
// A transaction that left tasks in db's store committed; due: when the
// first of them may start (0: now; later for a scheduled task). Wakes the
// executor.
void board_note_waiting(Oid dboid, TimestampTz due);
// Whether db may have tasks waiting in its store that are due (lock held).
bool board_db_waiting(Oid dboid);
// The number of notes for db so far (0 if none waiting).
uint32 board_waiting_gen(Oid dboid);
// A loader found nothing left in db's store to load now: no longer waiting
// (or, if next_due is not 0, waiting until then for scheduled tasks), unless
// a note came after gen was read.
void board_clear_waiting(Oid dboid, uint32 gen, TimestampTz next_due);
// The databases waiting and when they are due (out and due have room for
// kMaxWaitingDbs); *overflow if a note found the list full (then every
// database may be waiting); clears it.
int board_waiting_dbs(Oid *out, TimestampTz *due, bool *overflow);
// How many queued slots db has that can start (whose role runs fewer than
// per_role_cap tasks; all of them if the cap is 0), and how many slots are
// free (lock held).
int board_db_queued_count(Oid dboid, int per_role_cap);
int board_free_count();

} // namespace lantern
