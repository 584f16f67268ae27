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

// Makes room for one more entry, so that recording it after a slot was taken
// cannot fail.
static void
pending_reserve_one()
{
	if (npending < pending_capacity)
		return;
	int capacity = pending_capacity == 0 ? 16 : pending_capacity * 2;
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
			s->state = p.prior;
			if (p.prior == SlotState::Queued) {
				s->owner_pid = 0;
				s->owner_xid = InvalidTransactionId;
			}
		} else if (p.kind == PendingKind::Submit && slot_is_mine(s, p, SlotState::Reserved)) {
			s->state = SlotState::Free;
			freed = true;
		}
	}
	npending = from;
	return freed;
}

static void
xact_callback(XactEvent event, void *)
{
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
				s->state = SlotState::Queued;
				s->owner_pid = 0;
				s->queue_seq = board_next_queue_seq();
				queued = true;
			} else if (p.kind == PendingKind::Cancel && slot_is_mine(s, p, SlotState::Canceling)) {
				s->state = SlotState::Free;
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

static const char *
current_database_name()
{
	static char *name = nullptr;
	if (name == nullptr)
		name = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	return name;
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

static Oid
sequence_oid()
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

	TaskSlot init = {};
	init.dboid = MyDatabaseId;
	init.run_as = run_as;
	init.owner_pid = MyProcPid;
	init.submitted_at = task.has_started_at ? task.started_at : GetCurrentTransactionStartTimestamp();
	namestrcpy(&init.dbname, current_database_name());
	if (role_can_login(run_as)) {
		namestrcpy(&init.connect_as, username);
	} else {
		// A group role reached by SET ROLE: log in as the submitter, then SET ROLE.
		namestrcpy(&init.connect_as, GetUserNameFromId(GetSessionUserId(), false));
		namestrcpy(&init.set_role, username);
	}
	init.jobid = task.has_jobid ? task.jobid : nextval_internal(sequence_oid(), true);
	if (init.jobid <= 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("jobid must be positive")));

	xact_register_callbacks();
	pending_reserve_one();
	int index = board_reserve(init);
	if (index < 0)
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED), errmsg("too many lantern_fdw tasks"),
						errdetail("All %d task slots are taken by reserved, queued or running tasks.", board_nslots()),
						errhint("Wait for tasks to end, or raise lantern_fdw.max_tasks (needs a server restart).")));
	LWLockAcquire(board_lock(), LW_SHARED);
	uint32 generation = board_slot(index)->generation;
	LWLockRelease(board_lock());
	pending_add(PendingKind::Submit, index, generation, SlotState::Reserved);

	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	values[Col_jobid - 1] = Int64GetDatum(init.jobid);
	values[Col_query - 1] = CStringGetTextDatum(task.query);
	nulls[Col_pg_cron_job_name - 1] = true;
	if (task.job_name != nullptr)
		values[Col_job_name - 1] = CStringGetTextDatum(task.job_name);
	nulls[Col_job_name - 1] = (task.job_name == nullptr);
	values[Col_username - 1] = CStringGetTextDatum(username);
	values[Col_started_at - 1] = TimestampTzGetDatum(init.submitted_at);
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
		*started_at_out = init.submitted_at;
	if (username_out != nullptr)
		*username_out = username;
	return init.jobid;
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

void
note_pending_cancel(int index, uint32 generation, SlotState prior)
{
	pending_add(PendingKind::Cancel, index, generation, prior);
}

static void
record_canceled(Store *store, int64 jobid)
{
	HeapTuple row = store_fetch(store, jobid, GetLatestSnapshot());
	if (row != nullptr)
		store_record_end(store, row, "canceled", "Canceled by user");
}

bool
cancel_task_internal(int64 jobid, bool quiet)
{
	require_preloaded();
	PreventCommandIfReadOnly("lantern.cancel_task()");
	(void)GetTopTransactionId(); // a Canceling slot names our xid; get it before locking
	Store store;
	store_open(&store, RowExclusiveLock);
	Snapshot snap = GetActiveSnapshot();
	bool result = false;
	for (;;) {
		HeapTuple row = store_fetch(&store, jobid, snap);
		bool isnull;
		Oid run_as = row ? DatumGetObjectId(heap_getattr(row, Col_run_as, RelationGetDescr(store.rel), &isnull))
						 : InvalidOid;
		Visibility vis;
		visibility_init(&vis);
		if (row == nullptr || !visibility_check(&vis, run_as)) {
			if (quiet)
				break;
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("task %lld does not exist", (long long)jobid)));
		}
		if (!may_cancel(run_as)) {
			if (quiet)
				break;
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							errmsg("permission denied to cancel task %lld", (long long)jobid),
							errdetail("Only roles with the privileges of the role whose task is being canceled or "
									  "with privileges of the \"pg_signal_backend\" role may cancel this task.")));
		}
		Datum status = heap_getattr(row, Col_status, RelationGetDescr(store.rel), &isnull);
		const char *status_text = isnull ? "" : TextDatumGetCString(status);
		if (strcmp(status_text, "queued") != 0 && strcmp(status_text, "running") != 0)
			break; // already ended
		uint64 row_board = static_cast<uint64>(
			DatumGetInt64(heap_getattr(row, Col_board_id, RelationGetDescr(store.rel), &isnull)));

		pending_reserve_one();
		TransactionId wait_for = InvalidTransactionId;
		bool write_row = false;
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		int index = board_find(MyDatabaseId, jobid);
		TaskSlot *s = index >= 0 ? board_slot(index) : nullptr;
		if (s == nullptr) {
			// Not on the board: a row left by an earlier server life that recovery
			// has not reached yet (cancel it here), or a task that just ended.
			write_row = row_board != board_id();
			result = write_row;
		} else if (s->state == SlotState::Queued ||
				   (s->state == SlotState::Reserved && s->owner_pid == MyProcPid)) {
			note_pending_cancel(index, s->generation, s->state);
			s->state = SlotState::Canceling;
			s->owner_pid = MyProcPid;
			s->owner_xid = GetTopTransactionId();
			write_row = true;
			result = true;
		} else if (s->state == SlotState::Canceling) {
			if (s->owner_pid == MyProcPid)
				result = true;
			else
				wait_for = s->owner_xid;
		} else if (s->state == SlotState::Starting || s->state == SlotState::Running) {
			s->cancel_requested = true;
			result = true;
		}
		LWLockRelease(board_lock());

		if (TransactionIdIsValid(wait_for)) {
			// Another transaction is canceling this task: wait for it like a row
			// lock, then look again with a fresh snapshot.
			XactLockTableWait(wait_for, nullptr, nullptr, XLTW_None);
			snap = GetLatestSnapshot();
			continue;
		}
		if (write_row)
			record_canceled(&store, jobid);
		else if (result)
			board_wake_executor();
		break;
	}
	store_close(&store, RowExclusiveLock);
	return result;
}

} // namespace lantern

namespace lantern {

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
	const char *run_as_name = GetUserNameFromId(run_as, true);
	const char *login_name = GetUserNameFromId(login, true);
	if (run_as_name == nullptr || (!role_can_login(run_as) && login_name == nullptr)) {
		store_record_end(store, row, "failed", "ERROR:  the role of the task no longer exists");
		return true;
	}
	TaskSlot init = {};
	init.dboid = MyDatabaseId;
	init.jobid = jobid;
	init.run_as = run_as;
	init.owner_pid = MyProcPid;
	init.submitted_at = DatumGetTimestampTz(heap_getattr(row, Col_started_at, desc, &isnull));
	namestrcpy(&init.dbname, current_database_name());
	if (role_can_login(run_as)) {
		namestrcpy(&init.connect_as, run_as_name);
	} else {
		namestrcpy(&init.connect_as, login_name);
		namestrcpy(&init.set_role, run_as_name);
	}
	xact_register_callbacks();
	pending_reserve_one();
	int index = board_reserve(init);
	if (index < 0)
		return false;
	LWLockAcquire(board_lock(), LW_SHARED);
	uint32 generation = board_slot(index)->generation;
	LWLockRelease(board_lock());
	pending_add(PendingKind::Submit, index, generation, SlotState::Reserved);

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
