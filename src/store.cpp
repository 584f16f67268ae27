// The durable record of every task: the heap table _lantern_fdw.task_log,
// read and written directly (no SPI, no ACL checks: the table's privileges
// belong to its owner alone, and each caller here checks its own rights).
#include "pg.hpp"
#include "lantern.hpp"

extern "C" {
#include "commands/async.h"
#include "utils/json.h"
}

namespace lantern {

static const char *const kStoreSchema = "_lantern_fdw";

Oid
store_namespace(bool missing_ok)
{
	return get_namespace_oid(kStoreSchema, missing_ok);
}

void
store_open(Store *s, LOCKMODE mode)
{
	Oid nsp = store_namespace(true);
	Oid relid = OidIsValid(nsp) ? get_relname_relid("task_log", nsp) : InvalidOid;
	Oid indexid = OidIsValid(nsp) ? get_relname_relid("task_log_pkey", nsp) : InvalidOid;
	if (!OidIsValid(relid) || !OidIsValid(indexid))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("extension \"lantern_fdw\" is not installed in database \"%s\"",
							   get_database_name(MyDatabaseId)),
						errhint("Run CREATE EXTENSION lantern_fdw.")));
	s->rel = table_open(relid, mode);
	s->pkey = index_open(indexid, mode);
}

void
store_close(Store *s, LOCKMODE mode)
{
	index_close(s->pkey, mode);
	table_close(s->rel, mode);
	s->rel = nullptr;
	s->pkey = nullptr;
}

HeapTuple
store_fetch(Store *s, int64 jobid, Snapshot snap)
{
	ScanKeyData key;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(jobid));
	SysScanDesc scan = systable_beginscan(s->rel, RelationGetRelid(s->pkey), true, snap, 1, &key);
	HeapTuple tup = systable_getnext(scan);
	HeapTuple copy = HeapTupleIsValid(tup) ? heap_copytuple(tup) : nullptr;
	systable_endscan(scan);
	return copy;
}

static void
store_update(Store *s, HeapTuple old, Datum *values, bool *nulls, bool *replace)
{
	HeapTuple updated = heap_modify_tuple(old, RelationGetDescr(s->rel), values, nulls, replace);
	CatalogTupleUpdate(s->rel, &old->t_self, updated);
	heap_freetuple(updated);
	CommandCounterIncrement();
}

void
store_record_end(Store *s, HeapTuple old, const char *status, const char *error)
{
	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	bool replace[Store_natts] = {};
	bool isnull;
	Datum started = heap_getattr(old, Col_started_at, RelationGetDescr(s->rel), &isnull);
	TimestampTz ended = GetCurrentTimestamp();
	if (!isnull && DatumGetTimestampTz(started) > ended)
		ended = DatumGetTimestampTz(started); // a client-supplied future start
	values[Col_status - 1] = CStringGetTextDatum(status);
	replace[Col_status - 1] = true;
	if (error != nullptr)
		values[Col_error_message - 1] = CStringGetTextDatum(error);
	nulls[Col_error_message - 1] = (error == nullptr);
	replace[Col_error_message - 1] = true;
	if (isnull)
		nulls[Col_duration - 1] = true;
	else
		values[Col_duration - 1] = DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(ended), started);
	replace[Col_duration - 1] = true;
	store_update(s, old, values, nulls, replace);

	// LISTENers on lantern_tasks learn of the end when this transaction commits.
	StringInfoData payload;
	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"jobid\": %lld, \"status\": ",
					 (long long)DatumGetInt64(heap_getattr(old, Col_jobid, RelationGetDescr(s->rel), &isnull)));
	escape_json(&payload, status);
	appendStringInfoChar(&payload, '}');
	Async_Notify("lantern_tasks", payload.data);
}

bool
store_delete(Store *s, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result result = heap_delete(s->rel, tid, GetCurrentCommandId(true), InvalidSnapshot, true, &tmfd, false);
	if (result == TM_Ok)
		return true;
	if (result == TM_Updated || result == TM_Deleted || result == TM_SelfModified)
		return false; // somebody else removed (or changed) it first
	elog(ERROR, "unexpected heap_delete status %d", static_cast<int>(result));
	return false;
}

void
store_set_status(Store *s, HeapTuple old, const char *status)
{
	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	bool replace[Store_natts] = {};
	values[Col_status - 1] = CStringGetTextDatum(status);
	replace[Col_status - 1] = true;
	store_update(s, old, values, nulls, replace);
}

} // namespace lantern

namespace lantern {

bool
duration_is_null(HeapTuple row, TupleDesc desc)
{
	return heap_attisnull(row, Col_duration, desc);
}

} // namespace lantern
