// The durable record of every task: the heap table _lantern_fdw.task_log,
// read and written directly (no SPI, no ACL checks: the table's privileges
// belong to its owner alone, and each caller here checks its own rights).
#include "pg.hpp"
#include "compat.hpp"
#include "store.hpp"

extern "C" {
#include "access/amapi.h"
#include "catalog/index.h"
#include "catalog/pg_index.h"
#include "commands/async.h"
#include "utils/json.h"
}

namespace lantern {

static const char *const kStoreSchema = "_lantern_fdw";

// The partial indexes of the rows that wait in the store (0.2.0), which the
// loader reads; store_begin_scan_waiting.
static const char *const kWaitingIndex[] = {"task_log_waiting_queued", "task_log_waiting_scheduled"};

Oid
store_namespace(bool missing_ok)
{
	return get_namespace_oid(kStoreSchema, missing_ok);
}

Oid
store_find_relid()
{
	Oid nsp = store_namespace(true);
	return OidIsValid(nsp) ? get_relname_relid("task_log", nsp) : InvalidOid;
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

Oid
store_relid(const Store *s)
{
	return RelationGetRelid(s->rel);
}

void
store_estimate_size(const Store *s, double *tuples, BlockNumber *pages)
{
	*tuples = s->rel->rd_rel->reltuples;
	*pages = RelationGetNumberOfBlocks(s->rel);
}

TupleDesc
store_desc(const Store *s)
{
	return RelationGetDescr(s->rel);
}

void
store_read_row(const Store *s, HeapTuple row, TaskRow *out)
{
	TupleDesc desc = RelationGetDescr(s->rel);
	bool isnull;
	out->jobid = DatumGetInt64(heap_getattr(row, Col_jobid, desc, &isnull));
	out->run_as = DatumGetObjectId(heap_getattr(row, Col_run_as, desc, &isnull));
	out->login_role = DatumGetObjectId(heap_getattr(row, Col_login_role, desc, &isnull));
	out->started_at = DatumGetTimestampTz(heap_getattr(row, Col_started_at, desc, &isnull));
	out->ended = !heap_attisnull(row, Col_duration, desc);
	out->board_id = static_cast<uint64>(DatumGetInt64(heap_getattr(row, Col_board_id, desc, &isnull)));
	out->run_at = 0;
	out->max_runtime_us = 0;
	if (desc->natts >= Col_run_started_at) {
		Datum d = heap_getattr(row, Col_run_at, desc, &isnull);
		if (!isnull)
			out->run_at = DatumGetTimestampTz(d);
		d = heap_getattr(row, Col_max_runtime, desc, &isnull);
		if (!isnull)
			out->max_runtime_us = interval_usecs(DatumGetIntervalP(d));
	}
	// A database not yet updated to 0.2.0 has no keep_result column.
	Datum keep = desc->natts >= Col_keep_result ? heap_getattr(row, Col_keep_result, desc, &isnull) : BoolGetDatum(false);
	out->keep_result = !isnull && DatumGetBool(keep);
}

int64
interval_usecs(const Interval *iv)
{
	return iv->time + (static_cast<int64>(iv->month) * DAYS_PER_MONTH + iv->day) * USECS_PER_DAY;
}

char *
store_row_query(const Store *s, HeapTuple row)
{
	bool isnull;
	return TextDatumGetCString(heap_getattr(row, Col_query, RelationGetDescr(s->rel), &isnull));
}

char *
store_row_status(const Store *s, HeapTuple row)
{
	bool isnull;
	Datum d = heap_getattr(row, Col_status, RelationGetDescr(s->rel), &isnull);
	return isnull ? nullptr : TextDatumGetCString(d);
}

SysScanDesc
store_begin_scan(Store *s, Snapshot snap, const int64 *jobid)
{
	if (jobid == nullptr)
		return systable_beginscan(s->rel, InvalidOid, false, snap, 0, nullptr);
	ScanKeyData key;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(*jobid));
	return systable_beginscan(s->rel, RelationGetRelid(s->pkey), true, snap, 1, &key);
}

SysScanDesc
store_begin_scan_from(Store *s, Snapshot snap, int64 from)
{
	ScanKeyData key;
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(from));
	return systable_beginscan(s->rel, RelationGetRelid(s->pkey), true, snap, 1, &key);
}

SysScanDesc
store_begin_scan_waiting(Store *s, Snapshot snap, WaitingRows which, int64 from)
{
	Oid index = get_relname_relid(kWaitingIndex[which == WaitingRows::Queued ? 0 : 1], RelationGetNamespace(s->rel));
	if (!OidIsValid(index))
		return nullptr;
	if (which == WaitingRows::Scheduled)
		return systable_beginscan(s->rel, index, true, snap, 0, nullptr);
	ScanKeyData key;
	ScanKeyInit(&key, Col_jobid, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(from));
	return systable_beginscan(s->rel, index, true, snap, 1, &key);
}

HeapTuple
store_scan_next(SysScanDesc scan)
{
	return systable_getnext(scan);
}

void
store_end_scan(SysScanDesc scan)
{
	systable_endscan(scan);
}

HeapTuple
store_fetch(Store *s, int64 jobid, Snapshot snap)
{
	SysScanDesc scan = store_begin_scan(s, snap, &jobid);
	HeapTuple tup = systable_getnext(scan);
	HeapTuple copy = HeapTupleIsValid(tup) ? heap_copytuple(tup) : nullptr;
	systable_endscan(scan);
	return copy;
}

// ---- index entries ----

// Whether row, a version of a store row, belongs in waiting index k: its
// predicate (status = 'queued' AND board_id = 0, status = 'scheduled'),
// decided without an executor.
static bool
waiting_index_covers(const Store *s, HeapTuple row, int k)
{
	TupleDesc desc = RelationGetDescr(s->rel);
	bool isnull;
	Datum status = heap_getattr(row, Col_status, desc, &isnull);
	if (isnull)
		return false;
	text *t = DatumGetTextPP(status);
	const char *want = k == 0 ? "queued" : "scheduled";
	size_t len = VARSIZE_ANY_EXHDR(t);
	if (len != strlen(want) || memcmp(VARDATA_ANY(t), want, len) != 0)
		return false;
	if (k == 1)
		return true;
	Datum board = heap_getattr(row, Col_board_id, desc, &isnull);
	return !isnull && DatumGetInt64(board) == static_cast<int64>(kNotOnBoard);
}

// The index entries of a new row version, as CatalogIndexInsert makes them
// but for partial and expression indexes too: the waiting indexes get only
// the rows their predicate covers (decided here, without an executor, and
// without building their IndexInfo for the rows they do not cover); any
// other partial or expression index (one a superuser added) through the
// executor. update: NULL for an insert.
static void
store_insert_index_entries(Store *s, HeapTuple tup, const CompatUpdateIndexes *update)
{
	List *indexes = RelationGetIndexList(s->rel);
	TupleTableSlot *slot = nullptr;
	EState *estate = nullptr;
	ListCell *lc;
	foreach (lc, indexes) {
		// The primary key is open already (store_open).
		bool own = lfirst_oid(lc) != RelationGetRelid(s->pkey);
		Relation index = own ? index_open(lfirst_oid(lc), RowExclusiveLock) : s->pkey;
		bool plain = heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr) &&
					 heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr);
		int waiting = -1;
		if (!plain && heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr) &&
			RelationGetNamespace(index) == RelationGetNamespace(s->rel))
			for (int k = 0; k < 2; k++)
				if (strcmp(RelationGetRelationName(index), kWaitingIndex[k]) == 0)
					waiting = k;
		bool wanted = index->rd_index->indisready &&
					  (update == nullptr || compat_update_needs_entry(*update, tup, index)) &&
					  (waiting < 0 || waiting_index_covers(s, tup, waiting));
		if (wanted && slot == nullptr) {
			slot = MakeSingleTupleTableSlot(RelationGetDescr(s->rel), &TTSOpsHeapTuple);
			ExecStoreHeapTuple(tup, slot, false);
		}
		IndexInfo *info = nullptr;
		if (wanted && (plain || waiting >= 0)) {
			info = BuildDummyIndexInfo(index); // key columns only: nothing to evaluate
		} else if (wanted) {
			info = BuildIndexInfo(index);
			if (estate == nullptr) {
				estate = CreateExecutorState();
				GetPerTupleExprContext(estate)->ecxt_scantuple = slot;
			}
			if (info->ii_Predicate != NIL &&
				!ExecQual(ExecPrepareQual(info->ii_Predicate, estate), GetPerTupleExprContext(estate)))
				info = nullptr;
		}
		if (info != nullptr) {
			Datum values[INDEX_MAX_KEYS];
			bool isnull[INDEX_MAX_KEYS];
			FormIndexDatum(info, slot, estate, values, isnull);
			index_insert(index, values, isnull, &tup->t_self, s->rel,
						 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, false, info);
		}
		if (own)
			index_close(index, RowExclusiveLock);
	}
	list_free(indexes);
	if (estate != nullptr)
		FreeExecutorState(estate);
	if (slot != nullptr)
		ExecDropSingleTupleTableSlot(slot);
}

void
store_insert(Store *s, const NewRow &row)
{
	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	values[Col_jobid - 1] = Int64GetDatum(row.jobid);
	values[Col_query - 1] = CStringGetTextDatum(row.query);
	nulls[Col_pg_cron_job_name - 1] = true;
	if (row.job_name != nullptr)
		values[Col_job_name - 1] = CStringGetTextDatum(row.job_name);
	nulls[Col_job_name - 1] = (row.job_name == nullptr);
	values[Col_username - 1] = CStringGetTextDatum(row.username);
	values[Col_started_at - 1] = TimestampTzGetDatum(row.started_at);
	nulls[Col_duration - 1] = true;
	values[Col_status - 1] = CStringGetTextDatum(row.scheduled ? "scheduled" : "queued");
	nulls[Col_error_message - 1] = true;
	values[Col_run_as - 1] = ObjectIdGetDatum(row.run_as);
	values[Col_login_role - 1] = ObjectIdGetDatum(row.login_role);
	values[Col_board_id - 1] = Int64GetDatum(static_cast<int64>(row.board_id));
	values[Col_run_at - 1] = TimestampTzGetDatum(row.run_at);
	nulls[Col_run_at - 1] = row.run_at == 0;
	values[Col_max_runtime - 1] = PointerGetDatum(row.max_runtime);
	nulls[Col_max_runtime - 1] = row.max_runtime == nullptr;
	nulls[Col_run_started_at - 1] = true;
	if (RelationGetDescr(s->rel)->natts < Col_run_started_at && (row.run_at != 0 || row.max_runtime != nullptr))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("run_at and max_runtime need lantern_fdw 0.2.0"),
						errhint("Update the extension: ALTER EXTENSION lantern_fdw UPDATE.")));
	values[Col_keep_result - 1] = BoolGetDatum(row.keep_result);
	HeapTuple tup = heap_form_tuple(RelationGetDescr(s->rel), values, nulls);
	simple_heap_insert(s->rel, tup);
	store_insert_index_entries(s, tup, nullptr);
	heap_freetuple(tup);
}

static void
store_update(Store *s, HeapTuple old, Datum *values, bool *nulls, bool *replace, bool increment = true)
{
	HeapTuple updated = heap_modify_tuple(old, RelationGetDescr(s->rel), values, nulls, replace);
	CompatUpdateIndexes update{};
	compat_simple_heap_update(s->rel, &old->t_self, updated, &update);
	store_insert_index_entries(s, updated, &update);
	heap_freetuple(updated);
	if (increment)
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

// The output columns, as _lantern_fdw.task_output has them.
enum OutputColumn {
	Out_jobid = 1,
	Out_statement,
	Out_query,
	Out_command,
	Out_rows,
	Out_started_at,
	Out_duration,
	Out_messages,
	Out_result,
	Out_truncated,
	Output_natts = Out_truncated
};

// Opens task_output and its primary key; false if this version of the
// extension has none.
static bool
output_open(Relation *rel, Relation *pkey, bool missing_ok)
{
	Oid nsp = store_namespace(true);
	Oid relid = OidIsValid(nsp) ? get_relname_relid("task_output", nsp) : InvalidOid;
	Oid indexid = OidIsValid(nsp) ? get_relname_relid("task_output_pkey", nsp) : InvalidOid;
	if (!OidIsValid(relid) || !OidIsValid(indexid)) {
		if (missing_ok)
			return false;
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("extension \"lantern_fdw\" in database \"%s\" has no task output table",
							   get_database_name(MyDatabaseId)),
						errhint("Run ALTER EXTENSION lantern_fdw UPDATE.")));
	}
	*rel = table_open(relid, RowExclusiveLock);
	*pkey = index_open(indexid, RowExclusiveLock);
	return true;
}

void
store_insert_output(const OutputRow &row)
{
	Relation rel, pkey;
	output_open(&rel, &pkey, false);
	Datum values[Output_natts] = {};
	bool nulls[Output_natts] = {};
	values[Out_jobid - 1] = Int64GetDatum(row.jobid);
	values[Out_statement - 1] = Int32GetDatum(row.statement);
	values[Out_query - 1] = CStringGetTextDatum(row.query);
	nulls[Out_command - 1] = row.command == nullptr;
	if (row.command != nullptr)
		values[Out_command - 1] = CStringGetTextDatum(row.command);
	nulls[Out_rows - 1] = !row.has_rows;
	values[Out_rows - 1] = Int64GetDatum(row.rows);
	values[Out_started_at - 1] = TimestampTzGetDatum(row.started_at);
	Interval *duration = static_cast<Interval *>(palloc0(sizeof(Interval)));
	duration->time = row.duration_us;
	values[Out_duration - 1] = IntervalPGetDatum(duration);
	nulls[Out_messages - 1] = row.messages == nullptr;
	if (row.messages != nullptr)
		values[Out_messages - 1] = CStringGetTextDatum(row.messages);
	nulls[Out_result - 1] = row.result == 0;
	values[Out_result - 1] = row.result;
	values[Out_truncated - 1] = BoolGetDatum(row.truncated);
	HeapTuple tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	CatalogTupleInsert(rel, tup);
	heap_freetuple(tup);
	index_close(pkey, RowExclusiveLock);
	table_close(rel, RowExclusiveLock);
}

// Removes the output of a task whose row this transaction has just deleted.
static void
store_delete_output(int64 jobid)
{
	Relation rel, pkey;
	if (!output_open(&rel, &pkey, true))
		return;
	ScanKeyData key;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(jobid));
	SysScanDesc scan = systable_beginscan(rel, RelationGetRelid(pkey), true, GetLatestSnapshot(), 1, &key);
	HeapTuple tup;
	while ((tup = systable_getnext(scan)) != nullptr)
		simple_heap_delete(rel, &tup->t_self);
	systable_endscan(scan);
	index_close(pkey, RowExclusiveLock);
	table_close(rel, RowExclusiveLock);
}

bool
store_delete(Store *s, HeapTuple row)
{
	TM_FailureData tmfd;
	TM_Result result =
		heap_delete(s->rel, &row->t_self, GetCurrentCommandId(true), InvalidSnapshot, true, &tmfd, false);
	if (result == TM_Ok) {
		bool isnull;
		store_delete_output(DatumGetInt64(heap_getattr(row, Col_jobid, RelationGetDescr(s->rel), &isnull)));
		return true;
	}
	if (result == TM_Updated || result == TM_Deleted || result == TM_SelfModified)
		return false; // somebody else removed (or changed) it first
	elog(ERROR, "unexpected heap_delete status %d", static_cast<int>(result));
	return false;
}

void
store_mark_running(Store *s, HeapTuple old)
{
	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	bool replace[Store_natts] = {};
	values[Col_status - 1] = CStringGetTextDatum("running");
	replace[Col_status - 1] = true;
	if (RelationGetDescr(s->rel)->natts >= Col_run_started_at) {
		values[Col_run_started_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
		replace[Col_run_started_at - 1] = true;
	}
	store_update(s, old, values, nulls, replace);
}

void
store_set_queued(Store *s, HeapTuple old, uint64 board_id)
{
	Datum values[Store_natts] = {};
	bool nulls[Store_natts] = {};
	bool replace[Store_natts] = {};
	values[Col_board_id - 1] = Int64GetDatum(static_cast<int64>(board_id));
	replace[Col_board_id - 1] = true;
	values[Col_status - 1] = CStringGetTextDatum("queued");
	replace[Col_status - 1] = true;
	store_update(s, old, values, nulls, replace, false);
}

int
store_delete_ended_before(Store *s, TimestampTz cutoff, int limit)
{
	TupleDesc desc = RelationGetDescr(s->rel);
	SysScanDesc scan = store_begin_scan(s, GetActiveSnapshot(), nullptr);
	HeapTuple row;
	int deleted = 0;
	while (deleted < limit && (row = systable_getnext(scan)) != nullptr) {
		bool isnull;
		Datum duration = heap_getattr(row, Col_duration, desc, &isnull);
		if (isnull)
			continue; // active: never touched
		Datum started = heap_getattr(row, Col_started_at, desc, &isnull);
		TimestampTz ended = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, started, duration));
		if (ended >= cutoff)
			continue;
		if (store_delete(s, row))
			deleted++;
	}
	systable_endscan(scan);
	return deleted;
}

// A transaction-level lock of its own kind (an advisory tag with a class no
// SQL advisory lock function uses), so that a cancel and recovery never
// rewrite the same row at once: one waits for the other's commit, like for
// a row lock, and then reads the row again. Returns false if !wait and the
// lock is taken.
bool
store_lock_earlier_rows(Oid store_relid, bool wait)
{
	constexpr uint16 kEarlierRowsLockClass = 0x4c46; // "LF"
	LOCKTAG tag;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, store_relid, 0, kEarlierRowsLockClass);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

} // namespace lantern
