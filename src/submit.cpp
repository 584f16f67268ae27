// Submitting and canceling tasks inside a client's transaction, and the
// transaction callbacks that publish (or undo) both at commit (or abort).
#include "pg.hpp"
#include "lantern.hpp"

namespace lantern {

// ---------------------------------------------------------------------------
// Board changes made by the current transaction, applied at its end.

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
			if (p.prior == SlotState::Queued) {
				s->owner_pid = 0;
				s->owner_xid = InvalidTransactionId;
			}
			board_set_state(p.index, p.prior); // back in its place in the queue
		} else if (p.kind == PendingKind::Submit && slot_is_mine(s, p, SlotState::Reserved)) {
			board_set_state(p.index, SlotState::Free);
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
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	for (int i = board_first_active(), next; i >= 0; i = next) {
		next = board_next_active(i);
		TaskSlot *s = board_slot(i);
		if (s->dboid != MyDatabaseId || s->store_relid != forget_store)
			continue;
		if (s->state == SlotState::Queued)
			board_set_state(i, SlotState::Free);
		else
			s->cancel_requested = true;
	}
	LWLockRelease(board_lock());
	forget_store = InvalidOid;
	board_wake_executor();
	ConditionVariableBroadcast(board_cv());
}

void
forget_store_at_commit(Oid store_relid)
{
	xact_register_callbacks();
	forget_store = store_relid;
	forget_store_subid = GetCurrentSubTransactionId();
}

// lock_earlier_rows was taken in this transaction: it must not be prepared
// (a prepared transaction would keep recovery waiting across restarts).
static bool holds_earlier_rows_lock = false;

static void
xact_callback(XactEvent event, void *)
{
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
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		for (int i = 0; i < npending; i++) {
			const Pending &p = pending[i];
			TaskSlot *s = board_slot(p.index);
			if (p.kind == PendingKind::Submit && slot_is_mine(s, p, SlotState::Reserved)) {
				s->owner_pid = 0;
				s->queue_seq = board_next_queue_seq();
				board_set_state(p.index, SlotState::Queued);
				queued = true;
			} else if (p.kind == PendingKind::Cancel && slot_is_mine(s, p, SlotState::Canceling)) {
				board_set_state(p.index, SlotState::Free);
				freed = true;
			}
		}
		npending = 0;
		LWLockRelease(board_lock());
		if (queued)
			board_wake_executor();
		if (freed)
			ConditionVariableBroadcast(board_cv());
		break;
	}
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT: {
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		bool freed = undo_pending_from(0);
		LWLockRelease(board_lock());
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
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		bool freed = undo_pending_from(from);
		LWLockRelease(board_lock());
		board_wake_executor();
		if (freed)
			ConditionVariableBroadcast(board_cv());
	}
}

void
xact_register_callbacks()
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
	callbacks_registered = true;
}

// ---------------------------------------------------------------------------
// Validation

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
// transaction; false when the board is full. The executor logs in as run_as
// where it may, else as login_role followed by SET ROLE run_as.
static bool
reserve_slot(Store *store, int64 jobid, Oid run_as, Oid login_role, TimestampTz submitted_at)
{
	TaskSlot init = {};
	init.dboid = MyDatabaseId;
	init.store_relid = RelationGetRelid(store->rel);
	init.jobid = jobid;
	init.run_as = run_as;
	init.login_role = login_role;
	init.owner_pid = MyProcPid;
	init.submitted_at = submitted_at;
	const char *run_as_name = GetUserNameFromId(run_as, false);
	if (role_can_login(run_as)) {
		namestrcpy(&init.connect_as, run_as_name);
	} else {
		namestrcpy(&init.connect_as, GetUserNameFromId(login_role, false));
		namestrcpy(&init.set_role, run_as_name);
	}
	xact_register_callbacks();
	pending_reserve(1);
	int index = board_reserve(init);
	if (index < 0)
		return false;
	LWLockAcquire(board_lock(), LW_SHARED);
	uint32 generation = board_slot(index)->generation;
	LWLockRelease(board_lock());
	pending_add(PendingKind::Submit, index, generation, SlotState::Reserved);
	return true;
}

Oid
task_sequence_oid()
{
	Oid nsp = get_namespace_oid("lantern", true);
	Oid seq = OidIsValid(nsp) ? get_relname_relid("tasks_jobid_seq", nsp) : InvalidOid;
	if (!OidIsValid(seq))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("sequence lantern.tasks_jobid_seq does not exist"),
						errhint("Reinstall the extension with DROP EXTENSION lantern_fdw; CREATE EXTENSION lantern_fdw.")));
	return seq;
}

int64
submit_task(Store *store, const NewTask &task, TimestampTz *started_at_out, const char **username_out)
{
	require_preloaded();
	if (RecoveryInProgress())
		ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						errmsg("cannot submit a lantern_fdw task during recovery"),
						errhint("Submit tasks on the primary server.")));
	PreventCommandIfReadOnly("lantern.async_task()");

	if (task.query == nullptr)
		ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION), errmsg("query of a lantern_fdw task must not be null")));
	if (is_blank(task.query))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("query of a lantern_fdw task must not be empty")));
	if (parse_task_query(task.query) == NIL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("query of a lantern_fdw task contains no statement")));

	const char *username = task.username != nullptr ? task.username : GetUserNameFromId(GetUserId(), false);
	Oid run_as = get_role_oid(username, true);
	if (!OidIsValid(run_as))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("role \"%s\" does not exist", username)));
	if (!is_member_of_role(GetUserId(), run_as))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("permission denied to submit a task as role \"%s\"", username),
						errdetail("Only roles that could SET ROLE to \"%s\" may submit tasks that run as it.", username)));

	int64 jobid = task.has_jobid ? task.jobid : nextval_internal(task_sequence_oid(), true);
	if (jobid <= 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("jobid must be positive")));
	TimestampTz submitted_at = task.has_started_at ? task.started_at : GetCurrentTransactionStartTimestamp();
	if (!reserve_slot(store, jobid, run_as, GetSessionUserId(), submitted_at))
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED), errmsg("too many lantern_fdw tasks"),
						errdetail("All %d task slots are taken by reserved, queued or running tasks.", board_nslots()),
						errhint("Wait for tasks to end, or raise lantern_fdw.max_tasks (needs a server restart).")));

	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	values[Col_jobid - 1] = Int64GetDatum(jobid);
	values[Col_query - 1] = CStringGetTextDatum(task.query);
	nulls[Col_pg_cron_job_name - 1] = true;
	if (task.job_name != nullptr)
		values[Col_job_name - 1] = CStringGetTextDatum(task.job_name);
	nulls[Col_job_name - 1] = (task.job_name == nullptr);
	values[Col_username - 1] = CStringGetTextDatum(username);
	values[Col_started_at - 1] = TimestampTzGetDatum(submitted_at);
	nulls[Col_duration - 1] = true;
	values[Col_status - 1] = CStringGetTextDatum("queued");
	nulls[Col_error_message - 1] = true;
	values[Col_run_as - 1] = ObjectIdGetDatum(run_as);
	values[Col_login_role - 1] = ObjectIdGetDatum(GetSessionUserId());
	values[Col_board_id - 1] = Int64GetDatum(static_cast<int64>(board_id()));
	HeapTuple tup = heap_form_tuple(RelationGetDescr(store->rel), values, nulls);
	CatalogTupleInsert(store->rel, tup);
	heap_freetuple(tup);

	if (started_at_out != nullptr)
		*started_at_out = submitted_at;
	if (username_out != nullptr)
		*username_out = username;
	return jobid;
}

// ---------------------------------------------------------------------------
// Visibility and cancel rights (the rules of pg_stat_activity and
// pg_cancel_backend).

void
visibility_init(Visibility *v)
{
	v->see_all = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
}

bool
visibility_check(const Visibility *v, Oid run_as)
{
	return v->see_all || has_privs_of_role(GetUserId(), run_as);
}

static bool
may_cancel(Oid run_as)
{
	if (superuser() || has_privs_of_role(GetUserId(), run_as))
		return true;
	return has_privs_of_role(GetUserId(), ROLE_PG_SIGNAL_BACKEND) && !superuser_arg(run_as);
}

static void
record_canceled(Store *store, int64 jobid)
{
	HeapTuple row = store_fetch(store, jobid, GetLatestSnapshot());
	if (row != nullptr)
		store_record_end(store, row, "canceled", "Canceled by user");
}

// The durable state of a task to cancel: its row, read with snap, checked
// for visibility and cancel rights. Returns false (or errors unless quiet)
// when the caller may not cancel it; *ended when it has ended already.
static bool
check_cancelable(Store *store, int64 jobid, Snapshot snap, bool quiet, bool *ended, uint64 *row_board)
{
	HeapTuple row = store_fetch(store, jobid, snap);
	TupleDesc desc = RelationGetDescr(store->rel);
	bool isnull;
	Oid run_as = row ? DatumGetObjectId(heap_getattr(row, Col_run_as, desc, &isnull)) : InvalidOid;
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
	*ended = !duration_is_null(row, desc);
	*row_board = static_cast<uint64>(DatumGetInt64(heap_getattr(row, Col_board_id, desc, &isnull)));
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
	Oid store_relid = RelationGetRelid(store->rel);
	if (earlier_rows) {
		// Recovery may be putting these rows back on the board right now:
		// wait for it, then look again; it cannot start on them until we commit.
		xact_register_callbacks();
		lock_earlier_rows(store_relid, true);
		holds_earlier_rows_lock = true;
		check_items(store, items, n, GetLatestSnapshot(), true);
	}
	TransactionId my_xid = GetTopTransactionId(); // a Canceling slot names it; get it before locking
	xact_register_callbacks();
	pending_reserve(n);
	for (;;) {
		CHECK_FOR_INTERRUPTS();
		TransactionId wait_for = InvalidTransactionId;
		bool retry_soon = false;
		bool wake = false;
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < n; i++) {
				CancelItem &it = items[i];
				if (it.done)
					continue;
				int index = board_find(store_relid, it.jobid);
				TaskSlot *s = index >= 0 ? board_slot(index) : nullptr;
				bool queued = s != nullptr && (s->state == SlotState::Queued ||
											   (s->state == SlotState::Reserved && s->owner_pid == MyProcPid));
				if (pass == 0) {
					if (queued) {
						pending_add(PendingKind::Cancel, index, s->generation, s->state);
						board_set_state(index, SlotState::Canceling);
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
		LWLockRelease(board_lock());
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
	Oid store_relid = RelationGetRelid(store.rel);
	int n = 0;
	LWLockAcquire(board_lock(), LW_SHARED);
	CancelItem *items = static_cast<CancelItem *>(palloc0(sizeof(CancelItem) * Max(1, board_active_count())));
	for (int i = board_first_active(); i >= 0; i = board_next_active(i)) {
		const TaskSlot *s = board_slot(i);
		if (s->dboid == MyDatabaseId && s->store_relid == store_relid &&
			(s->state == SlotState::Queued || s->state == SlotState::Starting || s->state == SlotState::Running))
			items[n++].jobid = s->jobid;
	}
	LWLockRelease(board_lock());
	cancel_items(&store, items, n, true);
	store_close(&store, RowExclusiveLock);
}

} // namespace lantern

namespace lantern {

// A transaction-level lock of its own kind (an advisory tag with a class no
// SQL advisory lock function uses), so that a cancel and recovery never
// rewrite the same row at once: one waits for the other's commit, like for
// a row lock, and then reads the row again. Returns false if !wait and the
// lock is taken.
bool
lock_earlier_rows(Oid store_relid, bool wait)
{
	constexpr uint16 kEarlierRowsLockClass = 0x4c46; // "LF"
	LOCKTAG tag;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, store_relid, 0, kEarlierRowsLockClass);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

// Recovery: puts a queued task of an earlier server life back on the board,
// in the current transaction. Returns false when the board is full.
bool
requeue_task(Store *store, HeapTuple row)
{
	TupleDesc desc = RelationGetDescr(store->rel);
	bool isnull;
	int64 jobid = DatumGetInt64(heap_getattr(row, Col_jobid, desc, &isnull));
	Oid run_as = DatumGetObjectId(heap_getattr(row, Col_run_as, desc, &isnull));
	Oid login = DatumGetObjectId(heap_getattr(row, Col_login_role, desc, &isnull));
	if (GetUserNameFromId(run_as, true) == nullptr || (!role_can_login(run_as) && GetUserNameFromId(login, true) == nullptr)) {
		store_record_end(store, row, "failed", "ERROR:  the role of the task no longer exists");
		return true;
	}
	TimestampTz submitted_at = DatumGetTimestampTz(heap_getattr(row, Col_started_at, desc, &isnull));
	if (!reserve_slot(store, jobid, run_as, login, submitted_at))
		return false;

	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	bool replace[Store_natts] = {};
	values[Col_board_id - 1] = Int64GetDatum(static_cast<int64>(board_id()));
	replace[Col_board_id - 1] = true;
	HeapTuple updated = heap_modify_tuple(row, desc, values, nulls, replace);
	CatalogTupleUpdate(store->rel, &row->t_self, updated);
	return true;
}

} // namespace lantern
