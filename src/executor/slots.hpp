// The executor's side of the board (slots.cpp): every board operation the
// executor makes, each under the board's lock and inside pg_guarded. The
// board checks each transition; an illegal one stops the executor (its
// successor adopts the slots). Include after pg.hpp and board.hpp.
#pragma once

#include <string>
#include <vector>

namespace lantern {

// Takes the head of the queue (Queued -> Starting; the first task whose role
// is below lantern_fdw.max_parallel_tasks_per_role) if there is one and, when
// dboid is valid, it runs in database dboid as login role connect_as; the
// slot gets backend_pid (0: none yet). Copies the slot into *copy.
bool slots_take_queue_head(Oid dboid, const char *connect_as, int backend_pid, TaskSlot *copy, SlotRef *ref);
// A task whose submitter wished for a connection (board_wish_connection),
// still waiting (Reserved or Queued): where it will connect.
struct WishedTask {
	SlotRef ref;
	Oid dboid;
	NameData connect_as;
};
// The wishes made since *seen whose tasks still wait; advances *seen.
std::vector<WishedTask> slots_new_wishes(uint64 *seen);
// Whether each of refs still holds its task, not yet started (Reserved,
// Queued, or Canceling in a transaction that may abort).
std::vector<bool> slots_waiting(const std::vector<SlotRef> &refs);
// Starting: the backend of the task's connection.
void slots_set_backend(const SlotRef &ref, int backend_pid);
// Moves the slot of ref (if it still holds the task) to `to`: Running,
// Queued (only from Starting: back in its place) or Free (broadcasts the
// condition variable).
void slots_move(const SlotRef &ref, SlotState to);
// Keeps the task's outcome in its slot, and moves it to `to` (Running: it
// stays there; Ending; RecordPending).
void slots_set_outcome(const SlotRef &ref, SlotState to, Outcome outcome, const std::string &message);
// Running: marks statement k of count started; returns whether a cancel
// has been requested.
bool slots_mark_statement(const SlotRef &ref, int k, int count);
// Whether a cancel has been requested, for each of refs.
std::vector<bool> slots_cancel_requested(const std::vector<SlotRef> &refs);
// At start: slots left in flight by a previous executor. Starting ones go
// back to the queue, the others become RecordPending (with the outcome they
// were recording, or failed). Returns the pids of their backends.
std::vector<int> slots_adopt_orphans();

// A RecordPending slot, and its database.
struct PendingRef {
	SlotRef ref;
	Oid dboid;
};
// The RecordPending slots of a database (of all databases if db is invalid).
std::vector<PendingRef> slots_pending_outcomes(Oid db);
// How many of refs are still waiting for their outcome to be written.
int slots_still_pending(const std::vector<PendingRef> &refs);
// Frees the RecordPending slots of a database, with a WARNING for each.
void slots_give_up_outcomes(Oid db);
// The databases whose stores hold tasks waiting for the board, and when
// each is due (scheduled tasks); *overflow if the board's list of them
// overflowed (every database may have some).
std::vector<std::pair<Oid, TimestampTz>> slots_waiting_dbs(bool *overflow);

} // namespace lantern
