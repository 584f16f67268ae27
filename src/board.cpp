// The task board: shared memory slots for tasks that are reserved, queued,
// running or waiting for their outcome to be written. One LWLock guards all
// of it; a condition variable is broadcast whenever a slot is freed.
#include "pg.hpp"
#include "lantern.hpp"

namespace lantern {

struct Board {
	LWLock *lock;				// guards every field below, and the slots
	ConditionVariable task_ended; // broadcast when a slot is freed
	Latch *executor_latch;
	int executor_pid;
	uint64 board_id;	 // differs between board lifetimes (server starts)
	uint64 next_queue_seq;
	bool recovery_needed; // until the executor has had every database recovered
	uint32 close_idle_requests; // bumped to make the executor close idle connections
	int next_free_hint;
	int nslots;
	TaskSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

static Board *the_board = nullptr;

const char *
slot_state_name(SlotState s)
{
	switch (s) {
	case SlotState::Free:
		return "free";
	case SlotState::Reserved:
		return "reserved";
	case SlotState::Queued:
		return "queued";
	case SlotState::Canceling:
		return "canceling";
	case SlotState::Starting:
		return "starting";
	case SlotState::Running:
		return "running";
	case SlotState::Ending:
		return "ending";
	case SlotState::RecordPending:
		return "record pending";
	}
	return "unknown";
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

Size
board_shmem_size()
{
	return add_size(offsetof(Board, slots), mul_size(sizeof(TaskSlot), guc_max_tasks));
}

void
board_shmem_startup()
{
	bool found;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	the_board = static_cast<Board *>(ShmemInitStruct("lantern_fdw board", board_shmem_size(), &found));
	if (!found) {
		memset(the_board, 0, board_shmem_size());
		the_board->lock = &(GetNamedLWLockTranche("lantern_fdw"))->lock;
		ConditionVariableInit(&the_board->task_ended);
		the_board->board_id = static_cast<uint64>(GetCurrentTimestamp()) ^ (static_cast<uint64>(getpid()) << 48);
		the_board->next_queue_seq = 1;
		the_board->recovery_needed = true;
		the_board->nslots = guc_max_tasks;
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
board_attached()
{
	return the_board != nullptr;
}

Board *
board()
{
	return the_board;
}

LWLock *
board_lock()
{
	return the_board->lock;
}

TaskSlot *
board_slot(int index)
{
	return &the_board->slots[index];
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
board_set_executor(Latch *latch, int pid)
{
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	the_board->executor_latch = latch;
	the_board->executor_pid = pid;
	LWLockRelease(the_board->lock);
}

int
board_executor_pid()
{
	LWLockAcquire(the_board->lock, LW_SHARED);
	int pid = the_board->executor_pid;
	LWLockRelease(the_board->lock);
	return pid;
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

uint32
board_close_idle_requests()
{
	LWLockAcquire(the_board->lock, LW_SHARED);
	uint32 n = the_board->close_idle_requests;
	LWLockRelease(the_board->lock);
	return n;
}

int
board_find(Oid store_relid, int64 jobid)
{
	for (int i = 0; i < the_board->nslots; i++) {
		const TaskSlot &s = the_board->slots[i];
		if (s.state != SlotState::Free && s.jobid == jobid && s.dboid == MyDatabaseId && s.store_relid == store_relid)
			return i;
	}
	return -1;
}

int
board_reserve(const TaskSlot &init)
{
	int found = -1;
	LWLockAcquire(the_board->lock, LW_EXCLUSIVE);
	int n = the_board->nslots;
	for (int k = 0; k < n; k++) {
		int i = (the_board->next_free_hint + k) % n;
		if (the_board->slots[i].state == SlotState::Free) {
			found = i;
			break;
		}
	}
	if (found >= 0) {
		TaskSlot *s = &the_board->slots[found];
		uint32 generation = s->generation + 1;
		memcpy(s, &init, sizeof(TaskSlot));
		s->generation = generation;
		s->state = SlotState::Reserved;
		the_board->next_free_hint = (found + 1) % n;
	}
	LWLockRelease(the_board->lock);
	return found;
}

// Called with the lock held by the xact callbacks and the executor.
uint64
board_next_queue_seq()
{
	return the_board->next_queue_seq++;
}

} // namespace lantern
