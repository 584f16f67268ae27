// The transaction callbacks: board changes made by the current transaction
// are noted in a backend-local list and applied (or undone) at its end.
#include "pg.hpp"
#include "board.hpp"
#include "xact.hpp"

namespace lantern {

enum class PendingKind : uint8_t { Submit, Cancel };

struct Pending {
	PendingKind kind;
	SlotState prior; // Cancel: state to restore on abort
	int index;
	uint32 generation;
	SubTransactionId subid;
};

static Pending *pending = nullptr; // in TopMemoryContext
static int npending = 0;
static int pending_capacity = 0;
static bool callbacks_registered = false;
static void xact_register_callbacks();
static Oid forget_store = InvalidOid; // DROP EXTENSION in this transaction
static SubTransactionId forget_store_subid;

// Makes room for count more entries, so that recording them after slots
// were taken cannot fail.
static void
pending_reserve(int count)
{
	if (npending + count <= pending_capacity)
		return;
	int capacity = Max(16, Max(pending_capacity * 2, npending + count));
	if (pending == nullptr)
		pending = static_cast<Pending *>(MemoryContextAlloc(TopMemoryContext, capacity * sizeof(Pending)));
	else
		pending = static_cast<Pending *>(repalloc(pending, capacity * sizeof(Pending)));
	pending_capacity = capacity;
}

static void
pending_add(PendingKind kind, int index, uint32 generation, SlotState prior)
{
	Assert(npending < pending_capacity);
	pending[npending++] = Pending{kind, prior, index, generation, GetCurrentSubTransactionId()};
}

void
xact_reserve_room(int count)
{
	xact_register_callbacks();
	pending_reserve(count);
}

static bool wished_connection = false; // in this transaction

void
xact_note_submit(int index, uint32 generation)
{
	pending_add(PendingKind::Submit, index, generation, SlotState::Reserved);
	// The first task of the transaction has the executor open its connection
	// while the transaction goes on (it never waits for it).
	if (!wished_connection) {
		wished_connection = true;
		board_wish_connection(index, generation);
	}
}

void
xact_note_cancel(int index, uint32 generation, SlotState prior)
{
	pending_add(PendingKind::Cancel, index, generation, prior);
}

static bool
slot_is_mine(const TaskSlot *s, const Pending &p, SlotState expected)
{
	return s->generation == p.generation && s->state == expected && s->owner_pid == MyProcPid;
}

// Undoes entries [from, npending) in reverse order; caller holds the lock.
// Returns true if a slot was freed.
static bool
undo_pending_from(int from)
{
	bool freed = false;
	for (int i = npending - 1; i >= from; i--) {
		const Pending &p = pending[i];
		TaskSlot *s = board_slot(p.index);
		if (p.kind == PendingKind::Cancel && slot_is_mine(s, p, SlotState::Canceling)) {
			board_transition(p.index, p.prior); // back in its place in the queue
		} else if (p.kind == PendingKind::Submit && slot_is_mine(s, p, SlotState::Reserved)) {
			board_transition(p.index, SlotState::Free);
			freed = true;
		}
	}
	npending = from;
	return freed;
}

// Takes the tasks of a dropped store off the board: queued ones are freed,
// running ones canceled (their recording then fails and frees them).
static void
forget_dropped_store()
{
	board_acquire(LW_EXCLUSIVE);
	board_each_active([](int i, TaskSlot *s) {
		if (s->dboid != MyDatabaseId || s->store_relid != forget_store)
			return;
		if (s->state == SlotState::Queued)
			board_transition(i, SlotState::Free);
		else
			s->cancel_requested = true;
	});
	board_release();
	forget_store = InvalidOid;
	board_wake_executor();
	ConditionVariableBroadcast(board_cv());
}

void
xact_forget_store_at_commit(Oid store_relid)
{
	xact_register_callbacks();
	forget_store = store_relid;
	forget_store_subid = GetCurrentSubTransactionId();
}

// lock_earlier_rows was taken in this transaction: it must not be prepared
// (a prepared transaction would keep recovery waiting across restarts).
static bool holds_earlier_rows_lock = false;

void
xact_note_earlier_rows_lock()
{
	xact_register_callbacks();
	holds_earlier_rows_lock = true;
}

static bool store_submitted = false;
static TimestampTz store_due = 0; // the earliest due of those tasks

void
xact_note_store_submit(TimestampTz due)
{
	xact_register_callbacks();
	store_due = store_submitted ? Min(store_due, due) : due;
	store_submitted = true;
}

static void
xact_callback(XactEvent event, void *)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_ABORT)
		wished_connection = false;
	if (store_submitted) {
		if (event == XACT_EVENT_PRE_PREPARE)
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							errmsg("cannot PREPARE a transaction that has submitted or canceled lantern_fdw tasks"),
							errhint("Submit and cancel tasks in transactions that COMMIT directly.")));
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT) {
			store_submitted = false;
			board_note_waiting(MyDatabaseId, store_due); // must not fail: takes the lock, sets a latch
		} else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
			store_submitted = false;
	}
	if (holds_earlier_rows_lock) {
		if (event == XACT_EVENT_PRE_PREPARE)
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							errmsg("cannot PREPARE a transaction that has canceled lantern_fdw tasks"),
							errhint("Submit and cancel tasks in transactions that COMMIT directly.")));
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_ABORT ||
			event == XACT_EVENT_PARALLEL_ABORT)
			holds_earlier_rows_lock = false;
	}
	if (OidIsValid(forget_store)) {
		if (event == XACT_EVENT_COMMIT)
			forget_dropped_store();
		else if (event == XACT_EVENT_ABORT)
			forget_store = InvalidOid;
	}
	if (npending == 0)
		return;
	switch (event) {
	case XACT_EVENT_PRE_PREPARE:
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("cannot PREPARE a transaction that has submitted or canceled lantern_fdw tasks"),
						errhint("Submit and cancel tasks in transactions that COMMIT directly.")));
		break;
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_PARALLEL_COMMIT: {
		// Must not fail: the transaction is already committed.
		bool freed = false, queued = false;
		board_acquire(LW_EXCLUSIVE);
		for (int i = 0; i < npending; i++) {
			const Pending &p = pending[i];
			TaskSlot *s = board_slot(p.index);
			if (p.kind == PendingKind::Submit && slot_is_mine(s, p, SlotState::Reserved)) {
				board_transition(p.index, SlotState::Queued); // with the next FIFO number
				queued = true;
			} else if (p.kind == PendingKind::Cancel && slot_is_mine(s, p, SlotState::Canceling)) {
				board_transition(p.index, SlotState::Free);
				freed = true;
			}
		}
		npending = 0;
		board_release();
		if (queued)
			board_wake_executor();
		if (freed)
			ConditionVariableBroadcast(board_cv());
		break;
	}
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT: {
		board_acquire(LW_EXCLUSIVE);
		bool freed = undo_pending_from(0);
		board_release();
		// A restored cancel puts a task back in the queue.
		board_wake_executor();
		if (freed)
			ConditionVariableBroadcast(board_cv());
		break;
	}
	default:
		break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *)
{
	if (OidIsValid(forget_store) && forget_store_subid == mySubid) {
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			forget_store_subid = parentSubid;
		else if (event == SUBXACT_EVENT_ABORT_SUB)
			forget_store = InvalidOid;
	}
	if (npending == 0)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB) {
		for (int i = 0; i < npending; i++)
			if (pending[i].subid == mySubid)
				pending[i].subid = parentSubid;
	} else if (event == SUBXACT_EVENT_ABORT_SUB) {
		// Entries of this subtransaction (and of its committed children, which
		// carry its id) are the newest ones: undo that tail.
		int from = npending;
		while (from > 0 && pending[from - 1].subid == mySubid)
			from--;
		board_acquire(LW_EXCLUSIVE);
		bool freed = undo_pending_from(from);
		board_release();
		board_wake_executor();
		if (freed)
			ConditionVariableBroadcast(board_cv());
	}
}

static void
xact_register_callbacks()
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
	callbacks_registered = true;
}

} // namespace lantern
