// Canceling tasks: a queued one leaves the queue in the canceling
// transaction (Canceling, published at commit by the transaction
// callbacks); a running one is flagged for the executor to stop.
#include "pg.hpp"
#include "board.hpp"
#include "cancel.hpp"
#include "module.hpp"
#include "rights.hpp"
#include "store.hpp"
#include "xact.hpp"

namespace lantern {

static void
record_canceled(Store *store, int64 jobid)
{
	HeapTuple row = store_fetch(store, jobid, GetLatestSnapshot());
	if (row != nullptr)
		store_record_end(store, row, "canceled", kCanceledByUser);
}

// The durable state of a task to cancel: its row, read with snap, checked
// for visibility and cancel rights. Returns false (or errors unless quiet)
// when the caller may not cancel it; *ended when it has ended already.
static bool
check_cancelable(Store *store, int64 jobid, Snapshot snap, bool quiet, bool *ended, uint64 *row_board)
{
	HeapTuple row = store_fetch(store, jobid, snap);
	TaskRow r = {};
	if (row != nullptr)
		store_read_row(store, row, &r);
	Oid run_as = r.run_as;
	Visibility vis;
	visibility_init(&vis);
	if (row == nullptr || !visibility_check(&vis, run_as)) {
		if (quiet)
			return false;
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
	}
	if (!may_cancel(run_as)) {
		if (quiet)
			return false;
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("permission denied to cancel task %lld", (long long)jobid),
						errdetail("Only roles with the privileges of the role whose task is being canceled or "
								  "with privileges of the \"pg_signal_backend\" role may cancel this task.")));
	}
	*ended = r.ended;
	*row_board = r.board_id;
	return true;
}

struct CancelItem {
	int64 jobid;
	uint64 row_board;
	bool done;
	bool result;
	bool write_row;
};

// Reads the rows of the items not done yet with snap: an item is done when
// the caller may not cancel it, or it has ended.
static void
check_items(Store *store, CancelItem *items, int n, Snapshot snap, bool quiet)
{
	for (int i = 0; i < n; i++) {
		bool ended = false;
		if (!items[i].done)
			items[i].done =
				!check_cancelable(store, items[i].jobid, snap, quiet, &ended, &items[i].row_board) || ended;
	}
}

// Cancels a set of tasks. All queued ones leave the queue under one lock
// hold, before any running one is stopped: a slot freed by a stopped task
// can then not start a task that was queued when this was called.
static void
cancel_items(Store *store, CancelItem *items, int n, bool quiet)
{
	check_items(store, items, n, GetActiveSnapshot(), quiet);
	bool earlier_rows = false;
	for (int i = 0; i < n; i++)
		earlier_rows |= !items[i].done && items[i].row_board != board_id();
	Oid relid = store_relid(store);
	if (earlier_rows) {
		// Recovery may be putting these rows back on the board right now:
		// wait for it, then look again; it cannot start on them until we commit.
		xact_note_earlier_rows_lock();
		store_lock_earlier_rows(relid, true);
		check_items(store, items, n, GetLatestSnapshot(), true);
	}
	TransactionId my_xid = GetTopTransactionId(); // a Canceling slot names it; get it before locking
	xact_reserve_room(n);
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		TransactionId wait_for = InvalidTransactionId;
		bool retry_soon = false;
		bool wake = false;
		board_acquire(LW_EXCLUSIVE);
		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < n; i++) {
				CancelItem &it = items[i];
				if (it.done)
					continue;
				int index = board_find(relid, it.jobid);
				TaskSlot *s = index >= 0 ? board_slot(index) : nullptr;
				bool queued = s != nullptr && (s->state == SlotState::Queued ||
											   (s->state == SlotState::Reserved && s->owner_pid == MyProcPid));
				if (pass == 0) {
					if (queued) {
						xact_note_cancel(index, s->generation, s->state);
						board_transition(index, SlotState::Canceling);
						s->owner_pid = MyProcPid;
						s->owner_xid = my_xid;
						it.done = it.result = it.write_row = true;
					}
					continue;
				}
				if (s == nullptr) {
					// Not on the board: a row of an earlier server life that recovery
					// has not reached yet (cancel it here), or a task that just ended.
					it.done = true;
					it.result = it.write_row = it.row_board != board_id();
				} else if (s->state == SlotState::Canceling) {
					if (s->owner_pid == MyProcPid)
						it.done = it.result = true;
					else if (!TransactionIdIsInProgress(s->owner_xid))
						retry_soon = true; // its canceler ended; its callback lets go of the slot now
					else if (!TransactionIdIsValid(wait_for))
						wait_for = s->owner_xid;
				} else if (s->state == SlotState::Starting || s->state == SlotState::Running) {
					s->cancel_requested = true;
					it.done = it.result = wake = true;
				} else {
					it.done = true; // its outcome is being recorded
				}
			}
		}
		board_release();
		if (wake)
			board_wake_executor();
		for (int i = 0; i < n; i++)
			if (items[i].write_row) {
				record_canceled(store, items[i].jobid);
				items[i].write_row = false;
			}
		if (retry_soon && !TransactionIdIsValid(wait_for)) {
			pg_usleep(1000L);
			continue;
		}
		if (!TransactionIdIsValid(wait_for))
			break;
		// Another transaction is canceling a task: wait for it like for a row
		// lock, then look again with a fresh snapshot.
		XactLockTableWait(wait_for, nullptr, nullptr, XLTW_None);
		check_items(store, items, n, GetLatestSnapshot(), true);
	}
}

bool
cancel_task_internal(int64 jobid, bool quiet)
{
	require_preloaded();
	PreventCommandIfReadOnly("lantern.cancel_task()");
	Store store;
	store_open(&store, RowExclusiveLock);
	CancelItem item = {jobid, 0, false, false, false};
	cancel_items(&store, &item, 1, quiet);
	store_close(&store, RowExclusiveLock);
	return item.result;
}

void
cancel_all_tasks()
{
	require_preloaded();
	PreventCommandIfReadOnly("lantern.cancel_all_async_tasks()");
	Store store;
	store_open(&store, RowExclusiveLock);
	Oid relid = store_relid(&store);
	int n = 0;
	board_acquire(LW_SHARED);
	CancelItem *items = static_cast<CancelItem *>(palloc0(sizeof(CancelItem) * Max(1, board_active_count())));
	board_each_active([&](int, const TaskSlot *s) {
		if (s->dboid == MyDatabaseId && s->store_relid == relid &&
			(s->state == SlotState::Queued || s->state == SlotState::Starting || s->state == SlotState::Running))
			items[n++].jobid = s->jobid;
	});
	board_release();
	// The queued and scheduled tasks that are not on the board: they wait in
	// the store.
	int capacity = Max(1, n);
	SysScanDesc scan = store_begin_scan(&store, GetActiveSnapshot(), nullptr);
	HeapTuple row;
	while ((row = store_scan_next(scan)) != nullptr) {
		TaskRow r;
		store_read_row(&store, row, &r);
		if (r.ended || r.board_id == board_id())
			continue;
		char *status = store_row_status(&store, row);
		if (status == nullptr || (strcmp(status, "queued") != 0 && strcmp(status, "scheduled") != 0))
			continue;
		if (n == capacity) {
			capacity *= 2;
			items = static_cast<CancelItem *>(repalloc(items, sizeof(CancelItem) * capacity));
		}
		items[n++] = CancelItem{r.jobid, 0, false, false, false};
	}
	store_end_scan(scan);
	cancel_items(&store, items, n, true);
	store_close(&store, RowExclusiveLock);
}

} // namespace lantern
