// The task board: shared memory slots for tasks that are reserved, queued,
// running or waiting for their outcome to be written, their index and lists.
// One LWLock guards all of it; a condition variable is broadcast whenever a
// slot is freed.
#include "pg.hpp"
#include "board.hpp"
#include "settings.hpp"

namespace lantern {

struct Board {
	LWLock *lock;				// guards every field below, the slots and the index
	ConditionVariable task_ended; // broadcast when a slot is freed
	Latch *executor_latch;
	uint64 board_id;	 // differs between board lifetimes (server starts)
	uint64 next_queue_seq;
	bool recovery_needed; // until the executor has had every database recovered
	Oid recovery_ack;	  // the database a recovery worker last finished
	uint32 close_idle_requests; // bumped to make the executor close idle connections
	// Connections wished for by submitters (board_wish_connection): a ring of
	// the latest kConnectWishes; wish_seq counts every wish ever made.
	pg_atomic_uint64 wish_seq;
	SlotRef wishes[kConnectWishes];
	// Databases whose stores hold committed tasks that are not on the board
	// (the queue: see board.hpp); waiting_gen is bumped on every note.
	int nwaiting;
	bool waiting_overflow;
	Oid waiting_db[kMaxWaitingDbs];
	uint32 waiting_gen[kMaxWaitingDbs];
	TimestampTz waiting_due[kMaxWaitingDbs]; // no loader needed before then
	int free_head;
	int active_head;
	int active_count;
	int queue_head, queue_tail;
	int record_pending_count;
	int nslots;
	TaskSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

// The index: (database, store, jobid) -> slot.
struct BoardKey {
	Oid dboid;
	Oid store_relid;
	int64 jobid;
};
struct BoardEntry {
	BoardKey key;
	int index;
};

static Board *the_board = nullptr;
static HTAB *the_index = nullptr;
static char *the_messages = nullptr; // nslots * kMessageLen, apart from the slots to keep them small

#define ASSERT_LOCKED() Assert(LWLockHeldByMe(the_board->lock))
#define ASSERT_LOCKED_EXCLUSIVE() Assert(LWLockHeldByMeInMode(the_board->lock, LW_EXCLUSIVE))

// ---- the state machine ----

static constexpr int kNumStates = static_cast<int>(SlotState::RecordPending) + 1;

static constexpr uint16
bit(SlotState s)
{
	return static_cast<uint16>(1u << static_cast<int>(s));
}

// kLegal[from]: the states a slot may go to from state `from` (board.hpp and
// docs/design.md list who makes each move, and when).
static constexpr uint16 kLegal[kNumStates] = {
	/* Free */ bit(SlotState::Reserved),
	/* Reserved */ bit(SlotState::Queued) | bit(SlotState::Free) | bit(SlotState::Canceling),
	/* Queued */ bit(SlotState::Starting) | bit(SlotState::Canceling) | bit(SlotState::Free),
	/* Canceling */ bit(SlotState::Free) | bit(SlotState::Queued) | bit(SlotState::Reserved),
	/* Starting */ bit(SlotState::Running) | bit(SlotState::Ending) | bit(SlotState::RecordPending) |
		bit(SlotState::Queued) | bit(SlotState::Free),
	/* Running */ bit(SlotState::Ending) | bit(SlotState::RecordPending),
	/* Ending */ bit(SlotState::Free) | bit(SlotState::RecordPending),
	/* RecordPending */ bit(SlotState::Free),
};

bool
slot_transition_legal(SlotState from, SlotState to)
{
	return (kLegal[static_cast<int>(from)] & bit(to)) != 0;
}

const char *
slot_state_name(SlotState s)
{
	switch (s) {
	case SlotState::Free:
		return "Free";
	case SlotState::Reserved:
		return "Reserved";
	case SlotState::Queued:
		return "Queued";
	case SlotState::Canceling:
		return "Canceling";
	case SlotState::Starting:
		return "Starting";
	case SlotState::Running:
		return "Running";
	case SlotState::Ending:
		return "Ending";
	case SlotState::RecordPending:
		return "RecordPending";
	}
	return "?";
}

const char *
slot_state_status(SlotState s)
{
	switch (s) {
	case SlotState::Reserved:
	case SlotState::Queued:
	case SlotState::Canceling:
		return "queued";
	default:
		return "running";
	}
}

const char *
outcome_name(Outcome o)
{
	switch (o) {
	case Outcome::Succeeded:
		return "succeeded";
	case Outcome::Failed:
		return "failed";
	case Outcome::Canceled:
		return "canceled";
	case Outcome::None:
		break;
	}
	return "";
}

static Size
board_struct_size()
{
	return add_size(offsetof(Board, slots), mul_size(sizeof(TaskSlot), guc_max_tasks));
}

Size
board_shmem_size()
{
	Size size = board_struct_size();
	size = add_size(size, mul_size(kMessageLen, guc_max_tasks));
	return add_size(size, hash_estimate_size(guc_max_tasks, sizeof(BoardEntry)));
}

void
board_shmem_startup()
{
	bool found;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	the_board = static_cast<Board *>(ShmemInitStruct("lantern_fdw board", board_struct_size(), &found));
	bool found_messages;
	the_messages = static_cast<char *>(ShmemInitStruct("lantern_fdw board messages",
														mul_size(kMessageLen, guc_max_tasks), &found_messages));
	if (!found) {
		memset(the_board, 0, board_struct_size());
		the_board->lock = &(GetNamedLWLockTranche("lantern_fdw"))->lock;
		ConditionVariableInit(&the_board->task_ended);
		the_board->board_id = static_cast<uint64>(GetCurrentTimestamp()) ^ (static_cast<uint64>(getpid()) << 48);
		the_board->next_queue_seq = 1;
		pg_atomic_init_u64(&the_board->wish_seq, 0);
		the_board->recovery_needed = true;
		the_board->nslots = guc_max_tasks;
		the_board->active_head = the_board->queue_head = the_board->queue_tail = -1;
		for (int i = 0; i < guc_max_tasks; i++)
			the_board->slots[i].free_next = i + 1 < guc_max_tasks ? i + 1 : -1;
		the_board->free_head = 0;
	}
	HASHCTL info;
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(BoardKey);
	info.entrysize = sizeof(BoardEntry);
	the_index = ShmemInitHash("lantern_fdw board index", guc_max_tasks, guc_max_tasks, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

bool
board_attached()
{
	return the_board != nullptr;
}

void
board_acquire(LWLockMode mode)
{
	LWLockAcquire(the_board->lock, mode);
}

void
board_release()
{
	LWLockRelease(the_board->lock);
}

TaskSlot *
board_slot(int index)
{
	ASSERT_LOCKED();
	Assert(index >= 0 && index < the_board->nslots);
	return &the_board->slots[index];
}

TaskSlot *
board_slot_of(const SlotRef &ref)
{
	TaskSlot *s = board_slot(ref.index);
	return s->generation == ref.generation && s->state != SlotState::Free ? s : nullptr;
}

int
board_nslots()
{
	return the_board->nslots;
}

ConditionVariable *
board_cv()
{
	return &the_board->task_ended;
}

uint64
board_id()
{
	return the_board->board_id;
}

void
board_wake_executor()
{
	// Reading the pointer without the lock is fine: a stale latch of a dead
	// executor belongs to a PGPROC that stays valid shared memory.
	Latch *latch = the_board->executor_latch;
	if (latch != nullptr)
		SetLatch(latch);
}

void
board_set_executor(Latch *latch)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	the_board->executor_latch = latch;
	LWLockRelease(the_board->lock);
}

bool
board_recovery_needed()
{
	LWLockAcquire(the_board->lock, LW_SHARED);
	bool needed = the_board->recovery_needed;
	LWLockRelease(the_board->lock);
	return needed;
}

void
board_ack_recovery(Oid dboid)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	the_board->recovery_ack = dboid;
	LWLockRelease(the_board->lock);
}

bool
board_take_recovery_ack(Oid dboid)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	bool acked = the_board->recovery_ack == dboid;
	the_board->recovery_ack = InvalidOid;
	LWLockRelease(the_board->lock);
	return acked;
}

void
board_recovery_done()
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	the_board->recovery_needed = false;
	LWLockRelease(the_board->lock);
}

void
board_request_close_idle()
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	the_board->close_idle_requests++;
	LWLockRelease(the_board->lock);
	board_wake_executor();
}

void
board_wish_connection(int index, uint32 generation)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	uint64 seq = pg_atomic_read_u64(&the_board->wish_seq);
	the_board->wishes[seq % kConnectWishes] = SlotRef{index, generation};
	pg_atomic_write_u64(&the_board->wish_seq, seq + 1);
	LWLockRelease(the_board->lock);
	board_wake_executor();
}

int
board_take_wishes(uint64 *seen, SlotRef *out)
{
	// Unlocked first: on most passes of the executor's loop nothing is new.
	if (pg_atomic_read_u64(&the_board->wish_seq) == *seen)
		return 0;
	LWLockAcquire(the_board->lock, LW_SHARED);
	uint64 seq = pg_atomic_read_u64(&the_board->wish_seq);
	uint64 from = Max(*seen, seq >= kConnectWishes ? seq - kConnectWishes : 0);
	int n = 0;
	for (uint64 i = from; i < seq; i++)
		out[n++] = the_board->wishes[i % kConnectWishes];
	LWLockRelease(the_board->lock);
	*seen = seq;
	return n;
}

uint32
board_close_idle_requests()
{
	LWLockAcquire(the_board->lock, LW_SHARED);
	uint32 n = the_board->close_idle_requests;
	LWLockRelease(the_board->lock);
	return n;
}

// ---- the queue beyond the board ----

static int
waiting_find(Oid dboid)
{
	for (int i = 0; i < the_board->nwaiting; i++)
		if (the_board->waiting_db[i] == dboid)
			return i;
	return -1;
}

void
board_note_waiting(Oid dboid, TimestampTz due)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	int i = waiting_find(dboid);
	if (i < 0 && the_board->nwaiting < kMaxWaitingDbs) {
		i = the_board->nwaiting++;
		the_board->waiting_db[i] = dboid;
		the_board->waiting_gen[i] = 0;
		the_board->waiting_due[i] = due;
	}
	if (i >= 0) {
		the_board->waiting_gen[i]++;
		the_board->waiting_due[i] = Min(the_board->waiting_due[i], due);
	}
	else
		the_board->waiting_overflow = true;
	LWLockRelease(the_board->lock);
	board_wake_executor();
}

bool
board_db_waiting(Oid dboid)
{
	ASSERT_LOCKED();
	int i = waiting_find(dboid);
	return the_board->waiting_overflow || (i >= 0 && the_board->waiting_due[i] <= GetCurrentTimestamp());
}

uint32
board_waiting_gen(Oid dboid)
{
	LWLockAcquire(the_board->lock, LW_SHARED);
	int i = waiting_find(dboid);
	uint32 gen = i >= 0 ? the_board->waiting_gen[i] : 0;
	LWLockRelease(the_board->lock);
	return gen;
}

void
board_clear_waiting(Oid dboid, uint32 gen, TimestampTz next_due)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	int i = waiting_find(dboid);
	if (next_due != 0 && i < 0 && the_board->nwaiting < kMaxWaitingDbs) {
		i = the_board->nwaiting++; // scheduled tasks found by recovery
		the_board->waiting_db[i] = dboid;
		the_board->waiting_gen[i] = gen;
		the_board->waiting_due[i] = next_due;
	} else if (next_due != 0 && i < 0) {
		the_board->waiting_overflow = true;
	} else if (next_due != 0 && the_board->waiting_gen[i] == gen) {
		the_board->waiting_due[i] = next_due;
	} else if (i >= 0 && the_board->waiting_gen[i] == gen) {
		int last = --the_board->nwaiting;
		the_board->waiting_db[i] = the_board->waiting_db[last];
		the_board->waiting_gen[i] = the_board->waiting_gen[last];
		the_board->waiting_due[i] = the_board->waiting_due[last];
	}
	LWLockRelease(the_board->lock);
}

int
board_waiting_dbs(Oid *out, TimestampTz *due, bool *overflow)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	int n = the_board->nwaiting;
	memcpy(out, the_board->waiting_db, sizeof(Oid) * n);
	memcpy(due, the_board->waiting_due, sizeof(TimestampTz) * n);
	*overflow = the_board->waiting_overflow;
	the_board->waiting_overflow = false;
	LWLockRelease(the_board->lock);
	return n;
}


int
board_free_count()
{
	ASSERT_LOCKED();
	return the_board->nslots - the_board->active_count;
}

static BoardKey
make_key(Oid dboid, Oid store_relid, int64 jobid)
{
	BoardKey key;
	memset(&key, 0, sizeof(key));
	key.dboid = dboid;
	key.store_relid = store_relid;
	key.jobid = jobid;
	return key;
}

int
board_find(Oid store_relid, int64 jobid)
{
	ASSERT_LOCKED();
	BoardKey key = make_key(MyDatabaseId, store_relid, jobid);
	BoardEntry *e = static_cast<BoardEntry *>(hash_search(the_index, &key, HASH_FIND, nullptr));
	return e != nullptr ? e->index : -1;
}

static int role_waiting_count(Oid role);

int
board_reserve(const TaskSlot &init, uint32 *generation_out, int per_role_queue_cap)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	int index = the_board->free_head;
	if (index < 0) {
		LWLockRelease(the_board->lock);
		return kBoardFull;
	}
	if (per_role_queue_cap > 0 && role_waiting_count(init.run_as) >= per_role_queue_cap) {
		LWLockRelease(the_board->lock);
		return kRoleAtCap;
	}
	BoardKey key = make_key(init.dboid, init.store_relid, init.jobid);
	bool found;
	BoardEntry *e = static_cast<BoardEntry *>(hash_search(the_index, &key, HASH_ENTER_NULL, &found));
	if (e == nullptr || found) {
		LWLockRelease(the_board->lock);
		ereport(ERROR, (errcode(ERRCODE_UNIQUE_VIOLATION), errmsg("task %lld is already active", (long long)init.jobid)));
	}
	e->index = index;
	TaskSlot *s = &the_board->slots[index];
	the_board->free_head = s->free_next;
	uint32 generation = s->generation + 1;
	memcpy(s, &init, sizeof(TaskSlot));
	s->generation = generation;
	*generation_out = generation;
	s->state = SlotState::Reserved;
	s->free_next = -1;
	s->queue_prev = s->queue_next = -1;
	s->active_prev = -1;
	s->active_next = the_board->active_head;
	if (the_board->active_head >= 0)
		the_board->slots[the_board->active_head].active_prev = index;
	the_board->active_head = index;
	the_board->active_count++;
	LWLockRelease(the_board->lock);
	return index;
}

static void
queue_remove(int index)
{
	TaskSlot *s = &the_board->slots[index];
	if (s->queue_prev >= 0)
		the_board->slots[s->queue_prev].queue_next = s->queue_next;
	else
		the_board->queue_head = s->queue_next;
	if (s->queue_next >= 0)
		the_board->slots[s->queue_next].queue_prev = s->queue_prev;
	else
		the_board->queue_tail = s->queue_prev;
	s->queue_prev = s->queue_next = -1;
}

// Inserts in queue_seq order: at the tail for a new task, further up for
// one that goes back to its old place.
static void
queue_insert(int index)
{
	TaskSlot *s = &the_board->slots[index];
	int after = the_board->queue_tail;
	while (after >= 0 && the_board->slots[after].queue_seq > s->queue_seq)
		after = the_board->slots[after].queue_prev;
	int before = after >= 0 ? the_board->slots[after].queue_next : the_board->queue_head;
	s->queue_prev = after;
	s->queue_next = before;
	if (after >= 0)
		the_board->slots[after].queue_next = index;
	else
		the_board->queue_head = index;
	if (before >= 0)
		the_board->slots[before].queue_prev = index;
	else
		the_board->queue_tail = index;
}

void
board_transition(int index, SlotState to)
{
	ASSERT_LOCKED_EXCLUSIVE();
	TaskSlot *s = &the_board->slots[index];
	SlotState from = s->state;
	if (!slot_transition_legal(from, to))
		elog(ERROR, "lantern_fdw: illegal transition of the slot of task %lld from %s to %s", (long long)s->jobid,
			 slot_state_name(from), slot_state_name(to));
	if (from == SlotState::Queued)
		queue_remove(index);
	if (from == SlotState::RecordPending)
		the_board->record_pending_count--;
	s->state = to;
	switch (to) {
	case SlotState::Queued:
		if (from == SlotState::Reserved)
			s->queue_seq = the_board->next_queue_seq++; // its submitter committed
		s->owner_pid = 0;
		s->owner_xid = InvalidTransactionId;
		s->backend_pid = 0;
		queue_insert(index); // by FIFO number: one that comes back regains its place
		break;
	case SlotState::RecordPending:
		the_board->record_pending_count++;
		break;
	case SlotState::Free: {
		BoardKey key = make_key(s->dboid, s->store_relid, s->jobid);
		hash_search(the_index, &key, HASH_REMOVE, nullptr);
		if (s->active_prev >= 0)
			the_board->slots[s->active_prev].active_next = s->active_next;
		else
			the_board->active_head = s->active_next;
		if (s->active_next >= 0)
			the_board->slots[s->active_next].active_prev = s->active_prev;
		s->active_prev = s->active_next = -1;
		the_board->active_count--;
		s->free_next = the_board->free_head;
		the_board->free_head = index;
		break;
	}
	default:
		break;
	}
}

int
board_first_active_()
{
	ASSERT_LOCKED();
	return the_board->active_head;
}

int
board_next_active_(int index)
{
	return the_board->slots[index].active_next;
}

int
board_active_count()
{
	ASSERT_LOCKED();
	return the_board->active_count;
}

int
board_queue_head()
{
	ASSERT_LOCKED();
	return the_board->queue_head;
}

int
board_queue_next(int index)
{
	ASSERT_LOCKED();
	return the_board->slots[index].queue_next;
}

// The slots of role in one of the states of the mask (bits of bit()).
static int
role_count(Oid role, uint16 states)
{
	int n = 0;
	for (int i = the_board->active_head; i >= 0; i = the_board->slots[i].active_next) {
		const TaskSlot &s = the_board->slots[i];
		n += s.run_as == role && (states & bit(s.state)) != 0;
	}
	return n;
}

// The tasks of role that run (Starting, Running, Ending).
static int
role_running_count(Oid role)
{
	return role_count(role, bit(SlotState::Starting) | bit(SlotState::Running) | bit(SlotState::Ending));
}

// The slots of role that wait on the board (Reserved, Queued, Canceling).
static int
role_waiting_count(Oid role)
{
	return role_count(role, bit(SlotState::Reserved) | bit(SlotState::Queued) | bit(SlotState::Canceling));
}

int
board_db_queued_count(Oid dboid, int per_role_cap)
{
	ASSERT_LOCKED();
	int n = 0;
	for (int i = the_board->queue_head; i >= 0; i = the_board->slots[i].queue_next) {
		const TaskSlot &s = the_board->slots[i];
		n += s.dboid == dboid && (per_role_cap <= 0 || role_running_count(s.run_as) < per_role_cap);
	}
	return n;
}

int
board_queue_pick(int per_role_cap)
{
	ASSERT_LOCKED();
	for (int i = the_board->queue_head; i >= 0; i = the_board->slots[i].queue_next)
		if (per_role_cap <= 0 || role_running_count(the_board->slots[i].run_as) < per_role_cap)
			return i;
	return -1;
}

int
board_record_pending_count()
{
	ASSERT_LOCKED();
	return the_board->record_pending_count;
}

// The messages are kept apart from the slots, and touched only when there is
// one: with many slots, that keeps most of their pages out of memory.
const char *
board_message(int index)
{
	ASSERT_LOCKED();
	return the_board->slots[index].has_message ? the_messages + static_cast<Size>(index) * kMessageLen : "";
}

void
board_set_message(int index, const char *message)
{
	ASSERT_LOCKED_EXCLUSIVE();
	TaskSlot *s = &the_board->slots[index];
	s->has_message = message[0] != '\0';
	if (s->has_message)
		strlcpy(the_messages + static_cast<Size>(index) * kMessageLen, message, kMessageLen);
}

} // namespace lantern
