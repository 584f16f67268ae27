// Differences between the PostgreSQL versions lantern_fdw builds against
// (15 to 18), in one place. Each guard names the version and the change.
// Include after pg.hpp.
#pragma once

// PG 18: ExplainPropertyText and the other ExplainProperty* functions moved
// from commands/explain.h to commands/explain_format.h.
#if PG_VERSION_NUM >= 180000
extern "C" {
#include "commands/explain_format.h"
}
#endif

namespace lantern {

// PG 17: CreateWaitEventSet takes the ResourceOwner that tracks the set
// (NULL: it lives as long as the process) instead of a MemoryContext.
inline WaitEventSet *
compat_create_wait_event_set(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(nullptr, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}

// A plain foreign scan path (no pathkeys, no parameters, no outer plan).
// PG 17: create_foreignscan_path takes fdw_restrictinfo (before fdw_private);
// PG 18: it also takes disabled_nodes (after rows).
inline ForeignPath *
compat_create_foreignscan_path(PlannerInfo *root, RelOptInfo *rel, double rows, Cost startup_cost, Cost total_cost)
{
#if PG_VERSION_NUM >= 180000
	return create_foreignscan_path(root, rel, nullptr, rows, 0, startup_cost, total_cost, NIL, nullptr, nullptr, NIL,
								   NIL);
#elif PG_VERSION_NUM >= 170000
	return create_foreignscan_path(root, rel, nullptr, rows, startup_cost, total_cost, NIL, nullptr, nullptr, NIL, NIL);
#else
	return create_foreignscan_path(root, rel, nullptr, rows, startup_cost, total_cost, NIL, nullptr, nullptr, NIL);
#endif
}

// PG 16: simple_heap_update reports which indexes need entries for the new
// row version (TU_UpdateIndexes: none after a HOT update, only summarizing
// ones after an update that changed only their columns); before, a HOT
// update marks the new version heap-only. compat_update_needs_entry: whether
// index needs an entry for the new version tup.
#if PG_VERSION_NUM >= 160000
using CompatUpdateIndexes = TU_UpdateIndexes;
inline void
compat_simple_heap_update(Relation rel, ItemPointer otid, HeapTuple tup, CompatUpdateIndexes *update)
{
	simple_heap_update(rel, otid, tup, update);
}
inline bool
compat_update_needs_entry(CompatUpdateIndexes update, HeapTuple, Relation index)
{
	return update == TU_All || (update == TU_Summarizing && index->rd_indam->amsummarizing);
}
#else
using CompatUpdateIndexes = bool; // unused before 16
inline void
compat_simple_heap_update(Relation rel, ItemPointer otid, HeapTuple tup, CompatUpdateIndexes *)
{
	simple_heap_update(rel, otid, tup);
}
inline bool
compat_update_needs_entry(CompatUpdateIndexes, HeapTuple tup, Relation)
{
	return !HeapTupleIsHeapOnly(tup);
}
#endif

} // namespace lantern
