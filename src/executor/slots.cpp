// The executor's board operations, each under the board's lock inside
// pg_guarded. The lambdas given to pg_guarded must not throw: vectors they
// fill have their room reserved first.
#include "pg.hpp"
#include "board.hpp"
#include "settings.hpp"
#include "executor/guard.hpp"
#include "executor/slots.hpp"

namespace lantern {

bool
slots_take_queue_head(Oid dboid, const char *connect_as, int backend_pid, TaskSlot *copy, SlotRef *ref)
{
	bool taken = false;
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		int head = board_queue_pick(guc_max_parallel_tasks_per_role);
		TaskSlot *s = head >= 0 ? board_slot(head) : nullptr;
		if (s != nullptr && (!OidIsValid(dboid) || (s->dboid == dboid && strcmp(NameStr(s->connect_as), connect_as) == 0))) {
			board_transition(head, SlotState::Starting);
			s->backend_pid = backend_pid;
			*ref = SlotRef{head, s->generation};
			memcpy(copy, s, sizeof(TaskSlot));
			taken = true;
		}
		board_release();
		// A loader may wait for a waiting task of this role to start, to
		// load the role's next one (lantern_fdw.max_parallel_tasks_per_role).
		if (taken && guc_max_parallel_tasks_per_role > 0)
			ConditionVariableBroadcast(board_cv());
	});
	return taken;
}

std::vector<WishedTask>
slots_new_wishes(uint64 *seen)
{
	std::vector<WishedTask> wished;
	wished.reserve(kConnectWishes);
	pg_guarded([&] {
		SlotRef refs[kConnectWishes];
		int n = board_take_wishes(seen, refs);
		if (n == 0)
			return;
		board_acquire(LW_SHARED);
		for (int i = 0; i < n; i++) {
			TaskSlot *s = board_slot_of(refs[i]);
			if (s != nullptr && (s->state == SlotState::Reserved || s->state == SlotState::Queued))
				wished.push_back(WishedTask{refs[i], s->dboid, s->connect_as});
		}
		board_release();
	});
	return wished;
}

std::vector<bool>
slots_waiting(const std::vector<SlotRef> &refs)
{
	std::vector<bool> waiting(refs.size(), false);
	const SlotRef *r = refs.data();
	size_t n = refs.size();
	pg_guarded([&] {
		board_acquire(LW_SHARED);
		for (size_t i = 0; i < n; i++) {
			TaskSlot *s = board_slot_of(r[i]);
			waiting[i] = s != nullptr && (s->state == SlotState::Reserved || s->state == SlotState::Queued ||
										  s->state == SlotState::Canceling);
		}
		board_release();
	});
	return waiting;
}

void
slots_set_backend(const SlotRef &ref, int backend_pid)
{
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		if (TaskSlot *s = board_slot_of(ref))
			s->backend_pid = backend_pid;
		board_release();
	});
}

void
slots_move(const SlotRef &ref, SlotState to)
{
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		TaskSlot *s = board_slot_of(ref);
		if (s != nullptr && (to != SlotState::Queued || s->state == SlotState::Starting))
			board_transition(ref.index, to);
		board_release();
		if (to == SlotState::Free)
			ConditionVariableBroadcast(board_cv());
	});
}

void
slots_set_outcome(const SlotRef &ref, SlotState to, Outcome outcome, const std::string &message)
{
	const char *text = message.c_str();
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		if (TaskSlot *s = board_slot_of(ref)) {
			s->outcome = outcome;
			board_set_message(ref.index, text);
			if (s->state != to)
				board_transition(ref.index, to);
		}
		board_release();
	});
}

bool
slots_mark_statement(const SlotRef &ref, int k, int count)
{
	bool cancel_requested = false;
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		if (TaskSlot *s = board_slot_of(ref)) {
			cancel_requested = s->cancel_requested;
			s->stmt_index = k;
			s->stmt_count = count;
			if (k == 1)
				s->run_started_at = GetCurrentTimestamp();
		}
		board_release();
	});
	return cancel_requested;
}

std::vector<bool>
slots_cancel_requested(const std::vector<SlotRef> &refs)
{
	std::vector<bool> out(refs.size(), false);
	pg_guarded([&] {
		board_acquire(LW_SHARED);
		for (size_t i = 0; i < refs.size(); i++) {
			const TaskSlot *s = board_slot(refs[i].index);
			out[i] = s->generation == refs[i].generation && s->cancel_requested;
		}
		board_release();
	});
	return out;
}

std::vector<int>
slots_adopt_orphans()
{
	std::vector<int> pids;
	pids.reserve(board_nslots());
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		board_each_active([&](int i, TaskSlot *s) {
			if (s->state != SlotState::Starting && s->state != SlotState::Running && s->state != SlotState::Ending)
				return;
			if (s->backend_pid != 0)
				pids.push_back(s->backend_pid);
			if (s->state == SlotState::Starting) {
				board_transition(i, SlotState::Queued); // its old place in the queue
			} else if (s->outcome != Outcome::None) {
				// Its statements were done: the outcome it was recording stands.
				board_transition(i, SlotState::RecordPending);
			} else {
				s->outcome = Outcome::Failed;
				board_set_message(i, "ERROR:  the lantern_fdw executor stopped while the task was running; its backend "
									 "was terminated, and its statements that had not committed were rolled back");
				board_transition(i, SlotState::RecordPending);
			}
			s->backend_pid = 0;
		});
		board_release();
	});
	return pids;
}

std::vector<PendingRef>
slots_pending_outcomes(Oid db)
{
	// Called on every pass of the loop: the room for every slot is taken once.
	static std::vector<PendingRef> found;
	if (found.capacity() < static_cast<size_t>(board_nslots()))
		found.reserve(board_nslots());
	found.clear();
	pg_guarded([&] {
		board_acquire(LW_SHARED);
		if (board_record_pending_count() > 0)
			board_each_active([&](int i, const TaskSlot *s) {
				if (s->state == SlotState::RecordPending && (!OidIsValid(db) || s->dboid == db))
					found.push_back(PendingRef{SlotRef{i, s->generation}, s->dboid});
			});
		board_release();
	});
	return std::vector<PendingRef>(found.begin(), found.end());
}

int
slots_still_pending(const std::vector<PendingRef> &refs)
{
	int n = 0;
	pg_guarded([&] {
		board_acquire(LW_SHARED);
		for (const PendingRef &r : refs) {
			const TaskSlot *s = board_slot_of(r.ref);
			n += s != nullptr && s->state == SlotState::RecordPending;
		}
		board_release();
	});
	return n;
}

void
slots_give_up_outcomes(Oid db)
{
	pg_guarded([&] {
		board_acquire(LW_EXCLUSIVE);
		board_each_active([&](int i, const TaskSlot *s) {
			if (s->state == SlotState::RecordPending && s->dboid == db) {
				elog(WARNING, "lantern_fdw: could not record the outcome of task %lld in database %u: %s",
					 static_cast<long long>(s->jobid), db, board_message(i));
				board_transition(i, SlotState::Free);
			}
		});
		board_release();
		ConditionVariableBroadcast(board_cv());
	});
}

std::vector<std::pair<Oid, TimestampTz>>
slots_waiting_dbs(bool *overflow)
{
	std::vector<Oid> dbs(kMaxWaitingDbs);
	std::vector<TimestampTz> due(kMaxWaitingDbs);
	int n = 0;
	pg_guarded([&] { n = board_waiting_dbs(dbs.data(), due.data(), overflow); });
	std::vector<std::pair<Oid, TimestampTz>> out;
	out.reserve(n);
	for (int i = 0; i < n; i++)
		out.emplace_back(dbs[i], due[i]);
	return out;
}

} // namespace lantern
