// The transaction callbacks (xact.cpp): board changes made by a client's
// transaction — submissions, cancels of queued tasks, the drop of the
// extension — are noted here and published (or undone) when it ends.
// Include after pg.hpp and board.hpp.
#pragma once

namespace lantern {

// Makes room to note count more slots, so that noting them after they were
// taken cannot fail; registers the callbacks on first use.
void xact_reserve_room(int count);
// A slot this transaction reserved: Queued at commit, freed at abort.
void xact_note_submit(int index, uint32 generation);
// A slot this transaction moved to Canceling from prior: freed at commit,
// back to prior at abort.
void xact_note_cancel(int index, uint32 generation, SlotState prior);
// At commit, the tasks of a dropped store leave the board (queued ones never run).
void xact_forget_store_at_commit(Oid store_relid);
// The transaction holds the lock of a store's earlier rows (store.hpp): it
// must not be prepared.
void xact_note_earlier_rows_lock();
// The transaction left a task in the store only (the board was full, or
// it is scheduled: due is its run_at, else 0): at commit the executor is
// told to load it when due; it must not be prepared.
void xact_note_store_submit(TimestampTz due);

} // namespace lantern
