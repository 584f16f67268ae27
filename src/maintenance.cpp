// The maintenance worker: a short-lived background worker connected to one
// database. The executor starts it to write outcomes it could not record
// through a task connection, to recover the tasks of an earlier server life,
// and to apply lantern_fdw.task_retention.
#include "pg.hpp"
#include "board.hpp"
#include "maintenance.hpp"
#include "settings.hpp"
#include "store.hpp"
#include "submit.hpp"

namespace lantern {

constexpr int kBatch = 500;
// A loader that sleeps looks this often for tasks newly noted as waiting in
// its database's store (notes wake no sleeper).
constexpr long kNoteCheckMs = 20;

static const char *const kRestartedMessage =
	"ERROR:  the server restarted while the task was running; its statements that had not committed were rolled back";

static void
begin_work()
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_work()
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

// Capped: every row was looked at, but rows of roles at their cap of
// waiting slots (lantern_fdw.max_parallel_tasks_per_role) remain: they are
// loaded as those roles' waiting tasks start.
enum class BatchResult { Done, More, Full, Locked, Capped };

// How many queued slots one database's loader may fill: enough to keep the
// executor busy, few enough that a task of another database queued after
// them starts soon (fairness between databases).
static int
loader_queue_cap()
{
	return Max(8, 2 * guc_max_parallel_tasks);
}

// What became of one row a load looked at. Deferred: its role is at its
// cap of waiting slots; the row stays in the store (queued), and is loaded
// by a later batch.
enum class RowResult { Skipped, Loaded, NotDue, NoRoom, Deferred };

// The per-role cap of a batch: lantern_fdw.max_parallel_tasks_per_role for a
// loader (0 for recovery, which fills the board), and the roles found at it.
// Once a role is deferred, its later rows in jobid order are too, so that a
// role's tasks keep their order even if one of its waiting slots starts
// meanwhile.
struct RoleCap {
	int cap;
	List *deferred_roles; // Oids
};

// Loads one row of the store that is not on this board: a queued (or due
// scheduled) one goes onto the board if *room and the role cap allow, a
// running one of an earlier server life is failed with the restart; a
// scheduled one not due yet leaves its run_at in *next_due (the earliest).
// A due scheduled row whose role is at its cap becomes queued in the store.
static RowResult
load_row(Store *store, HeapTuple row, TimestampTz now, int *room, TimestampTz *next_due, RoleCap *roles)
{
	TaskRow r;
	store_read_row(store, row, &r);
	if (r.ended || r.board_id == board_id())
		return RowResult::Skipped;
	char *status = store_row_status(store, row);
	bool scheduled = status != nullptr && strcmp(status, "scheduled") == 0;
	if (scheduled && r.run_at > now) {
		if (*next_due == 0 || r.run_at < *next_due)
			*next_due = r.run_at;
		return RowResult::NotDue;
	}
	HeapTuple copy = heap_copytuple(row);
	if (scheduled || (status != nullptr && strcmp(status, "queued") == 0)) {
		if (*room <= 0)
			return RowResult::NoRoom;
		Requeue step = roles->cap > 0 && list_member_oid(roles->deferred_roles, r.run_as)
						   ? Requeue::RoleAtCap
						   : requeue_task(store, copy, roles->cap);
		if (step == Requeue::BoardFull)
			return RowResult::NoRoom;
		if (step == Requeue::RoleAtCap) {
			if (!list_member_oid(roles->deferred_roles, r.run_as))
				roles->deferred_roles = lappend_oid(roles->deferred_roles, r.run_as);
			if (scheduled)
				store_set_queued(store, copy, kNotOnBoard); // due: it queues like any task
			return RowResult::Deferred;
		}
		(*room)--;
		if (r.board_id != kNotOnBoard && !scheduled)
			elog(LOG, "lantern_fdw: task %lld queued again after a server restart", (long long)r.jobid);
	} else {
		store_record_end(store, copy, "failed", kRestartedMessage);
		elog(LOG, "lantern_fdw: task %lld failed: the server restarted while it ran", (long long)r.jobid);
	}
	return RowResult::Loaded;
}

// Tasks of the store that are not on this board (capped: at most
// loader_queue_cap() queued slots of this database).
// - Recovery (not capped), or a store without the waiting indexes (not yet
//   updated to 0.2.0): every row from *from (a cursor kept between batches)
//   in jobid order, the rows of an earlier server life (another board) that
//   had not ended and those that waited in the store (board id 0). *next_due
//   becomes the earliest run_at of the scheduled ones not due yet.
// - A loader: only the rows that wait, through the partial indexes: first
//   the due scheduled ones in run_at order up to the first that is not due
//   (its run_at goes into *next_due), then the queued ones from *from. What
//   it reads grows with what it loads, not with the store.
static BatchResult
load_batch(int64 *from, bool capped, TimestampTz *next_due)
{
	Store store;
	store_open(&store, RowExclusiveLock);
	// A cancel may be writing one of these rows: let it commit (try again
	// later), then read what it committed.
	if (!store_lock_earlier_rows(store_relid(&store), false)) {
		store_close(&store, RowExclusiveLock);
		return BatchResult::Locked;
	}
	RoleCap roles = {capped ? guc_max_parallel_tasks_per_role : 0, NIL};
	board_acquire(LW_SHARED);
	int room = board_free_count();
	if (capped)
		room = Min(room, loader_queue_cap() - board_db_queued_count(MyDatabaseId, roles.cap));
	board_release();
	Snapshot snap = RegisterSnapshot(GetLatestSnapshot());
	TimestampTz now = GetCurrentTimestamp();
	int done = 0;
	int64 first_deferred = 0; // the lowest jobid of a row left for its role's cap (0: none)
	auto row_jobid = [&](HeapTuple row) {
		bool isnull;
		return DatumGetInt64(heap_getattr(row, Col_jobid, store_desc(&store), &isnull));
	};
	auto defer = [&](int64 jobid) {
		first_deferred = first_deferred == 0 ? jobid : Min(first_deferred, jobid);
	};
	BatchResult result = BatchResult::Done;
	// Loads one row; true when the scan stops here. A scan in run_at order
	// (the scheduled index) stops at the first row not due, and leaves *from
	// alone; a scan in jobid order notes where the next batch starts.
	auto look = [&](HeapTuple row, bool in_run_at_order) {
		int64 jobid = row_jobid(row);
		RowResult step = load_row(&store, row, now, &room, next_due, &roles);
		if (step == RowResult::NotDue)
			return in_run_at_order; // run_at order: the rest is later still
		if (step == RowResult::Deferred)
			defer(jobid);
		if (step == RowResult::NoRoom)
			result = BatchResult::Full;
		else if (step == RowResult::Loaded && ++done == kBatch)
			result = BatchResult::More;
		else
			return false;
		if (!in_run_at_order)
			*from = result == BatchResult::Full ? jobid : jobid + 1;
		return true;
	};
	HeapTuple row;
	SysScanDesc scan = capped ? store_begin_scan_waiting(&store, snap, WaitingRows::Scheduled, 0) : nullptr;
	bool by_index = scan != nullptr;
	if (by_index) {
		*next_due = 0;
		while ((row = store_scan_next(scan)) != nullptr && !look(row, true)) {
		}
		store_end_scan(scan);
		scan = result == BatchResult::Done ? store_begin_scan_waiting(&store, snap, WaitingRows::Queued, *from)
										   : nullptr;
	} else {
		scan = store_begin_scan_from(&store, snap, *from);
	}
	while (scan != nullptr && (row = store_scan_next(scan)) != nullptr && !look(row, false)) {
	}
	if (scan != nullptr)
		store_end_scan(scan);
	// Rows left for their roles' cap: the next batch starts at the first of
	// them (every row before it was loaded), so they keep their order.
	if (first_deferred != 0) {
		*from = result == BatchResult::Done ? first_deferred : Min(*from, first_deferred);
		if (result == BatchResult::Done)
			result = BatchResult::Capped;
	}
	UnregisterSnapshot(snap);
	store_close(&store, RowExclusiveLock);
	return result;
}

// A message kept on the board may have been cut inside a character, or come
// from libpq in another encoding: make it valid text of this database.
static void
make_valid_text(char *msg)
{
	int len = static_cast<int>(strlen(msg));
	len = pg_mbcliplen(msg, len, len);
	msg[len] = '\0';
	if (!pg_verifymbstr(msg, len, true))
		for (char *c = msg; *c != '\0'; c++)
			if (IS_HIGHBIT_SET(*c))
				*c = '?';
}

struct PendingOutcome {
	SlotRef ref;
	int64 jobid;
	Outcome outcome;
	char message[kMessageLen];
};

// Writes the outcomes the executor left on the board for this database.
static void
write_pending_outcomes(Oid store_relid)
{
	int n = 0;
	board_acquire(LW_SHARED);
	int npending = board_record_pending_count();
	PendingOutcome *items = static_cast<PendingOutcome *>(palloc(sizeof(PendingOutcome) * Max(1, npending)));
	if (npending > 0)
		board_each_active([&](int i, const TaskSlot *s) {
			if (n == npending || s->state != SlotState::RecordPending || s->dboid != MyDatabaseId ||
				s->store_relid != store_relid)
				return;
			PendingOutcome &p = items[n++];
			p.ref = SlotRef{i, s->generation};
			p.jobid = s->jobid;
			p.outcome = s->outcome;
			strlcpy(p.message, board_message(i), kMessageLen);
		});
	board_release();
	if (n == 0)
		return;

	begin_work();
	Store store;
	store_open(&store, RowExclusiveLock);
	for (int i = 0; i < n; i++) {
		HeapTuple row = store_fetch(&store, items[i].jobid, GetLatestSnapshot());
		// A row that already has its outcome keeps it.
		TaskRow r;
		if (row == nullptr || (store_read_row(&store, row, &r), r.ended))
			continue;
		const char *status = outcome_name(items[i].outcome);
		make_valid_text(items[i].message);
		store_record_end(&store, row, status, items[i].message[0] ? items[i].message : nullptr);
	}
	store_close(&store, RowExclusiveLock);
	end_work();

	board_acquire(LW_EXCLUSIVE);
	for (int i = 0; i < n; i++) {
		TaskSlot *s = board_slot_of(items[i].ref);
		if (s != nullptr && s->state == SlotState::RecordPending)
			board_transition(items[i].ref.index, SlotState::Free);
	}
	board_release();
	ConditionVariableBroadcast(board_cv());
}

// Deletes up to kBatch ended tasks older than the retention; returns how many.
static int
retention_batch(TimestampTz cutoff)
{
	Store store;
	store_open(&store, RowExclusiveLock);
	int deleted = store_delete_ended_before(&store, cutoff, kBatch);
	store_close(&store, RowExclusiveLock);
	return deleted;
}

// Frees the slots of this database's tasks whose store is gone (the
// extension was dropped, or dropped and created again).
static void
forget_stale_tasks(Oid store_relid)
{
	board_acquire(LW_EXCLUSIVE);
	board_each_active([&](int i, const TaskSlot *s) {
		if (s->dboid == MyDatabaseId && s->store_relid != store_relid &&
			(s->state == SlotState::Queued || s->state == SlotState::RecordPending))
			board_transition(i, SlotState::Free);
	});
	board_release();
	ConditionVariableBroadcast(board_cv());
}

// Sleeps until due, or until a new note of tasks waiting in this database's
// store (gen changed): then the loader looks again. Notes wake no sleeper,
// so it looks for them every few milliseconds; meanwhile it writes the
// outcomes the executor leaves for this database (no other worker may run
// here while it does).
static void
wait_until_due(TimestampTz due, uint32 gen, Oid store_relid)
{
	for (;;) {
		write_pending_outcomes(store_relid);
		TimestampTz now = GetCurrentTimestamp();
		if (now >= due || board_waiting_gen(MyDatabaseId) != gen)
			return;
		long ms = Min(TimestampDifferenceMilliseconds(now, due), kNoteCheckMs);
		CHECK_FOR_INTERRUPTS();
		ConditionVariableTimedSleep(board_cv(), Max(ms, 1L), PG_WAIT_EXTENSION);
	}
}

bool
start_maintenance_worker(Oid dboid, MaintenanceKind kind, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker = {};
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "lantern_fdw", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "lantern_maintenance_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "lantern_fdw maintenance of database %u", dboid);
	strlcpy(worker.bgw_type, "lantern_fdw maintenance", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_extra[0] = static_cast<char>(kind);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

} // namespace lantern

extern "C" void
lantern_maintenance_main(Datum arg)
{
	using namespace lantern;
	Oid dboid = DatumGetObjectId(arg);
	bool recover = MyBgworkerEntry->bgw_extra[0] == static_cast<char>(MaintenanceKind::Recover);
	bool load = MyBgworkerEntry->bgw_extra[0] == static_cast<char>(MaintenanceKind::Load);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	// Also a database that does not accept connections has tasks to finish.
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);
	pgstat_report_appname("lantern_fdw maintenance");

	begin_work();
	Oid store_relid = InvalidOid;
	if (OidIsValid(get_extension_oid("lantern_fdw", true))) {
		Store store;
		store_open(&store, AccessShareLock);
		store_relid = lantern::store_relid(&store);
		store_close(&store, AccessShareLock);
	}
	end_work();
	forget_stale_tasks(store_relid);
	if (!OidIsValid(store_relid)) {
		board_clear_waiting(MyDatabaseId, board_waiting_gen(MyDatabaseId), 0);
		if (recover)
			board_ack_recovery(MyDatabaseId); // nothing to recover here
		proc_exit(0);
	}

	// Recovery, and loading the tasks that wait in the store: until a pass
	// from the first jobid found nothing left (recovery: over the whole
	// store; a loader: over the rows that wait, through their indexes).
	// On the condition variable's wait list before the first look, so that no
	// slot freed meanwhile goes unnoticed (a sleep that was not prepared
	// returns at once: the loop would spin).
	if (recover || load)
		ConditionVariablePrepareToSleep(board_cv());
	int64 from = 0;
	bool whole_pass = true; // the pass under way began at the first jobid
	uint32 gen = board_waiting_gen(MyDatabaseId);
	TimestampTz next_due = 0; // the earliest run_at of the scheduled tasks seen in this pass
	while (recover || load) {
		uint32 batch_gen = board_waiting_gen(MyDatabaseId); // the notes this batch may see
		begin_work();
		// Recovery fills the board (a restart is no time to share it); a
		// loader keeps room for other databases' tasks.
		if (from == 0)
			next_due = 0;
		BatchResult result = load_batch(&from, !recover, &next_due);
		end_work();
		if (result == BatchResult::Done) {
			if (whole_pass && load && next_due != 0 &&
				next_due <= TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kLoadAheadMs)) {
				// The executor starts a loader this long before a scheduled
				// task is due, so that the worker's start and connection are
				// not on the task's path: wait here until it is due (or
				// new tasks are noted), then look again.
				wait_until_due(next_due, gen, store_relid);
				from = 0;
				gen = board_waiting_gen(MyDatabaseId);
				continue;
			}
			if (whole_pass)
				break;
			// Rows committed late with lower jobids: one more pass from the start.
			from = 0;
			whole_pass = true;
			gen = board_waiting_gen(MyDatabaseId);
			continue;
		}
		if (result == BatchResult::More)
			continue;
		whole_pass = whole_pass && result == BatchResult::Locked && from == 0;
		// The board (or this database's share of it) is full, or the roles
		// of the rows left are at their cap, or a cancel holds the rows:
		// meanwhile write the outcomes of this server life, then wait for a
		// slot to be freed or a waiting task to start (or a second).
		write_pending_outcomes(store_relid);
		CHECK_FOR_INTERRUPTS();
		if (result != BatchResult::Capped) {
			ConditionVariableTimedSleep(board_cv(), 1000, PG_WAIT_EXTENSION);
			continue;
		}
		// Rows left for their roles' cap, and maybe room on the board: tasks
		// of other roles noted meanwhile are loaded at once (notes wake no
		// sleeper: look for them every few milliseconds).
		for (long waited = 0; waited < 1000 && board_waiting_gen(MyDatabaseId) == batch_gen;
			 waited += kNoteCheckMs) {
			if (!ConditionVariableTimedSleep(board_cv(), kNoteCheckMs, PG_WAIT_EXTENSION))
				break; // a slot was freed or a waiting task started
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (recover || load)
		ConditionVariableCancelSleep();
	if (recover || load)
		board_clear_waiting(MyDatabaseId, gen, next_due);
	if (recover)
		board_ack_recovery(MyDatabaseId);

	write_pending_outcomes(store_relid);

	if (guc_task_retention_s > 0) {
		TimestampTz cutoff = GetCurrentTimestamp() - static_cast<TimestampTz>(guc_task_retention_s) * USECS_PER_SEC;
		for (;;) {
			begin_work();
			int deleted = retention_batch(cutoff);
			end_work();
			if (deleted < kBatch)
				break;
		}
	}
	proc_exit(0);
}
