// The foreign data wrapper behind lantern.tasks: scans read the durable store
// with live board state laid over it; inserts submit tasks; deletes remove
// ended tasks from the history; updates are refused.
#include "pg.hpp"
#include "board.hpp"
#include "compat.hpp"
#include "module.hpp"
#include "rights.hpp"
#include "store.hpp"
#include "submit.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(lantern_fdw_handler);
PG_FUNCTION_INFO_V1(lantern_fdw_validator);
}

namespace lantern {

// Columns of lantern.tasks (a prefix of the store's columns).
constexpr int kTaskColumns = Col_error_message;

// fdw_private of a scan: one Integer, 1 if fdw_exprs holds a jobid key.
enum ScanPrivate { ScanPrivate_HasKey = 0 };

struct LiveState {
	int64 jobid;
	SlotState state;
};

struct ScanState {
	Store store;
	List *key_exprs; // ExprState list: the jobid key, if any
	SysScanDesc scan;
	bool started;
	bool empty; // the key is NULL: no row matches
	Visibility visibility;
	bool keyed;		 // a jobid lookup: reads the board per row, copies nothing
	LiveState *live; // else a copy of the board, sorted by jobid
	int nlive;
	HeapTuple tuple; // the current row as lantern.tasks sees it
};

struct ModifyState {
	Store store;
	AttrNumber jobid_attno; // DELETE: the row identity junk column
};

static void
check_is_tasks_table(Oid relid)
{
	Oid nsp = get_rel_namespace(relid);
	const char *nspname = get_namespace_name(nsp);
	if (nspname == nullptr || strcmp(nspname, "lantern") != 0 || strcmp(get_rel_name(relid), "tasks") != 0)
		ereport(ERROR, (errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
						errmsg("foreign data wrapper \"lantern_fdw\" serves only the foreign table lantern.tasks")));
}

// The jobid = <constant or parameter> clause of a scan, as the expression
// that yields the constant; NULL if there is none.
static Expr *
find_jobid_key(PlannerInfo *root, RelOptInfo *baserel)
{
	ListCell *lc;
	foreach (lc, baserel->baserestrictinfo) {
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		if (!IsA(ri->clause, OpExpr))
			continue;
		OpExpr *op = reinterpret_cast<OpExpr *>(ri->clause);
		if (list_length(op->args) != 2)
			continue;
		if (get_op_opfamily_strategy(op->opno, INTEGER_BTREE_FAM_OID) != BTEqualStrategyNumber)
			continue;
		for (int side = 0; side < 2; side++) {
			Node *var = static_cast<Node *>(list_nth(op->args, side));
			Node *other = static_cast<Node *>(list_nth(op->args, 1 - side));
			if (IsA(var, RelabelType))
				var = reinterpret_cast<Node *>(reinterpret_cast<RelabelType *>(var)->arg);
			if (!IsA(var, Var))
				continue;
			Var *v = reinterpret_cast<Var *>(var);
			if (v->varno != static_cast<int>(baserel->relid) || v->varattno != Col_jobid || v->varlevelsup != 0)
				continue;
			if (contain_var_clause(other) || contain_volatile_functions(other))
				continue;
			Oid type = exprType(other);
			if (type != INT8OID && type != INT4OID && type != INT2OID)
				continue;
			(void)root;
			return reinterpret_cast<Expr *>(other);
		}
	}
	return nullptr;
}

static void
get_foreign_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	require_preloaded();
	check_is_tasks_table(foreigntableid);
	Expr *key = find_jobid_key(root, baserel);
	baserel->fdw_private = key;
	if (key != nullptr) {
		baserel->rows = 1;
		return;
	}
	Store store;
	store_open(&store, AccessShareLock);
	double tuples;
	BlockNumber pages;
	store_estimate_size(&store, &tuples, &pages);
	store_close(&store, AccessShareLock);
	if (tuples < 0)
		tuples = Max(100.0, pages * 30.0);
	baserel->pages = pages;
	baserel->tuples = tuples;
	baserel->rows = clamp_row_est(tuples * clauselist_selectivity(root, baserel->baserestrictinfo, 0, JOIN_INNER, nullptr));
}

static void
get_foreign_paths(PlannerInfo *root, RelOptInfo *baserel, Oid)
{
	Cost startup = 0;
	Cost total;
	if (baserel->fdw_private != nullptr)
		total = random_page_cost * 2 + cpu_index_tuple_cost + cpu_tuple_cost;
	else
		total = seq_page_cost * baserel->pages + cpu_tuple_cost * baserel->tuples * 2;
	add_path(baserel, reinterpret_cast<Path *>(compat_create_foreignscan_path(root, baserel, baserel->rows, startup, total)));
}

static ForeignScan *
get_foreign_plan(PlannerInfo *, RelOptInfo *baserel, Oid, ForeignPath *, List *tlist, List *scan_clauses,
				 Plan *outer_plan)
{
	// Every clause is checked again locally; the key only narrows the scan.
	scan_clauses = extract_actual_clauses(scan_clauses, false);
	Expr *key = static_cast<Expr *>(baserel->fdw_private);
	List *fdw_exprs = key != nullptr ? list_make1(copyObjectImpl(key)) : NIL;
	List *fdw_private = list_make1(makeInteger(key != nullptr ? 1 : 0));
	return make_foreignscan(tlist, scan_clauses, baserel->relid, fdw_exprs, fdw_private, NIL, NIL, outer_plan);
}

static int
compare_live(const void *a, const void *b)
{
	int64 x = static_cast<const LiveState *>(a)->jobid;
	int64 y = static_cast<const LiveState *>(b)->jobid;
	return x < y ? -1 : (x > y ? 1 : 0);
}

static void
begin_foreign_scan(ForeignScanState *node, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	require_preloaded();
	ForeignScan *plan = reinterpret_cast<ForeignScan *>(node->ss.ps.plan);
	ScanState *st = static_cast<ScanState *>(palloc0(sizeof(ScanState)));
	node->fdw_state = st;
	store_open(&st->store, AccessShareLock);
	st->key_exprs = ExecInitExprList(plan->fdw_exprs, reinterpret_cast<PlanState *>(node));
	visibility_init(&st->visibility);

	// A lookup by jobid reads at most one row: it asks the board's index for
	// that task alone (find_live) rather than copying the board, whose size
	// is max_tasks.
	st->keyed = intVal(linitial(plan->fdw_private)) != 0;
	if (st->keyed)
		return;
	// A copy of the live state of this database's tasks, for the overlay.
	Oid relid = store_relid(&st->store);
	board_acquire(LW_SHARED);
	st->live = static_cast<LiveState *>(palloc(sizeof(LiveState) * Max(1, board_active_count())));
	board_each_active([&](int, const TaskSlot *s) {
		if (s->dboid == MyDatabaseId && s->store_relid == relid)
			st->live[st->nlive++] = LiveState{s->jobid, s->state};
	});
	board_release();
	qsort(st->live, st->nlive, sizeof(LiveState), compare_live);
}

static void
start_scan(ForeignScanState *node, ScanState *st)
{
	int64 jobid = 0;
	bool has_key = false;
	if (st->key_exprs != NIL) {
		ExprContext *econtext = node->ss.ps.ps_ExprContext;
		ExprState *expr = static_cast<ExprState *>(linitial(st->key_exprs));
		bool isnull;
		Datum value = ExecEvalExprSwitchContext(expr, econtext, &isnull);
		if (isnull) {
			st->empty = true;
			st->started = true;
			return;
		}
		switch (exprType(reinterpret_cast<Node *>(expr->expr))) {
		case INT2OID:
			jobid = DatumGetInt16(value);
			break;
		case INT4OID:
			jobid = DatumGetInt32(value);
			break;
		default:
			jobid = DatumGetInt64(value);
			break;
		}
		has_key = true;
	}
	// Iterate runs in per-tuple memory; the scan must outlive it.
	MemoryContext old = MemoryContextSwitchTo(node->ss.ps.state->es_query_cxt);
	st->scan = store_begin_scan(&st->store, node->ss.ps.state->es_snapshot, has_key ? &jobid : nullptr);
	MemoryContextSwitchTo(old);
	st->started = true;
	st->empty = false;
}

// The live state of task jobid, if it has a slot on the board.
static bool
find_live(ScanState *st, int64 jobid, SlotState *state)
{
	if (st->keyed) {
		board_acquire(LW_SHARED);
		int i = board_find(store_relid(&st->store), jobid);
		if (i >= 0)
			*state = board_slot(i)->state;
		board_release();
		return i >= 0;
	}
	LiveState probe{jobid, SlotState::Free};
	const LiveState *hit =
		static_cast<const LiveState *>(bsearch(&probe, st->live, st->nlive, sizeof(LiveState), compare_live));
	if (hit != nullptr)
		*state = hit->state;
	return hit != nullptr;
}

// Stores the lantern.tasks columns of a deformed store row into slot as a
// virtual tuple: no copy; the values point into the row, which stays valid
// until the next call (the scan keeps its buffer pinned).
static void
store_task_values(TupleTableSlot *slot, const Datum *values, const bool *nulls, const char *status_override)
{
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * kTaskColumns);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * kTaskColumns);
	if (status_override != nullptr) {
		slot->tts_values[Col_status - 1] = CStringGetTextDatum(status_override);
		slot->tts_isnull[Col_status - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
}

static TupleTableSlot *
iterate_foreign_scan(ForeignScanState *node)
{
	ScanState *st = static_cast<ScanState *>(node->fdw_state);
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ExecClearTuple(slot);
	if (!st->started)
		start_scan(node, st);
	if (st->empty)
		return slot;
	TupleDesc desc = store_desc(&st->store);
	HeapTuple row;
	Datum values[Store_natts];
	bool nulls[Store_natts];
	// The index scan may allocate what it frees only at its end (btree's
	// killed items, when a lookup meets dead versions of a row): not in the
	// per-tuple memory the executor resets between rows.
	MemoryContext query_cxt = node->ss.ps.state->es_query_cxt;
	for (;;) {
		MemoryContext old = MemoryContextSwitchTo(query_cxt);
		row = store_scan_next(st->scan);
		MemoryContextSwitchTo(old);
		if (row == nullptr)
			break;
		heap_deform_tuple(row, desc, values, nulls);
		if (!visibility_check(&st->visibility, DatumGetObjectId(values[Col_run_as - 1])))
			continue;
		// A task that has not ended takes its status from the board.
		const char *status = nullptr;
		if (nulls[Col_duration - 1]) {
			SlotState live;
			if (find_live(st, DatumGetInt64(values[Col_jobid - 1]), &live))
				status = slot_state_status(live);
		}
		store_task_values(slot, values, nulls, status);
		return slot;
	}
	return slot;
}

static void
end_scan(ScanState *st)
{
	if (st->scan != nullptr)
		store_end_scan(st->scan);
	st->scan = nullptr;
	st->started = false;
}

static void
rescan_foreign_scan(ForeignScanState *node)
{
	end_scan(static_cast<ScanState *>(node->fdw_state));
}

static void
end_foreign_scan(ForeignScanState *node)
{
	ScanState *st = static_cast<ScanState *>(node->fdw_state);
	if (st == nullptr)
		return;
	end_scan(st);
	store_close(&st->store, AccessShareLock);
}

static void
explain_foreign_scan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = reinterpret_cast<ForeignScan *>(node->ss.ps.plan);
	bool has_key = intVal(linitial(plan->fdw_private)) != 0;
	ExplainPropertyText("Lantern Access", has_key ? "index lookup on jobid" : "full scan", es);
}

// ---- modify ----

static int
is_foreign_rel_updatable(Relation)
{
	// UPDATE is listed so that it reaches plan_foreign_modify's clear error.
	return (1 << CMD_INSERT) | (1 << CMD_DELETE) | (1 << CMD_UPDATE);
}

static void
refuse_update()
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("cannot update lantern.tasks"),
					errdetail("The status of a task is maintained by lantern_fdw."),
					errhint("To stop a task, use lantern.cancel_task(jobid).")));
}

static List *
plan_foreign_modify(PlannerInfo *, ModifyTable *plan, Index, int)
{
	if (plan->operation == CMD_UPDATE)
		refuse_update();
	return NIL;
}

static void
add_foreign_update_targets(PlannerInfo *root, Index rtindex, RangeTblEntry *, Relation)
{
	Var *var = makeVar(rtindex, Col_jobid, INT8OID, -1, InvalidOid, 0);
	add_row_identity_var(root, var, rtindex, "lantern_jobid");
}

static void
begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, CmdType operation)
{
	require_preloaded();
	check_is_tasks_table(RelationGetRelid(rinfo->ri_RelationDesc));
	ModifyState *st = static_cast<ModifyState *>(palloc0(sizeof(ModifyState)));
	store_open(&st->store, RowExclusiveLock);
	if (operation == CMD_DELETE) {
		Plan *subplan = outerPlanState(mtstate)->plan;
		st->jobid_attno = ExecFindJunkAttributeInTlist(subplan->targetlist, "lantern_jobid");
		if (!AttributeNumberIsValid(st->jobid_attno))
			elog(ERROR, "could not find junk lantern_jobid column");
	}
	rinfo->ri_FdwState = st;
}

static void
begin_foreign_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *, int, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	begin_modify(mtstate, rinfo, mtstate->operation);
}

static void
begin_foreign_insert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	begin_modify(mtstate, rinfo, CMD_INSERT);
}

static void
end_foreign_modify(EState *, ResultRelInfo *rinfo)
{
	ModifyState *st = static_cast<ModifyState *>(rinfo->ri_FdwState);
	if (st != nullptr)
		store_close(&st->store, RowExclusiveLock);
}

static void
refuse_client_value(TupleTableSlot *slot, int attno)
{
	if (slot->tts_isnull[attno - 1])
		return;
	const char *name = NameStr(TupleDescAttr(slot->tts_tupleDescriptor, attno - 1)->attname);
	ereport(ERROR, (errcode(ERRCODE_GENERATED_ALWAYS),
					errmsg("cannot insert a non-null value into column \"%s\" of lantern.tasks", name),
					errdetail("Column \"%s\" is maintained by lantern_fdw.", name)));
}

static void
refuse_non_default(TupleTableSlot *slot, int attno)
{
	const char *name = NameStr(TupleDescAttr(slot->tts_tupleDescriptor, attno - 1)->attname);
	ereport(ERROR, (errcode(ERRCODE_GENERATED_ALWAYS),
					errmsg("cannot insert a non-default value into column \"%s\" of lantern.tasks", name),
					errdetail("Column \"%s\" is set by lantern_fdw.", name)));
}

// The last value lantern.tasks_jobid_seq handed out (to any session); 0 if none.
static int64
sequence_last_value()
{
	LOCAL_FCINFO(fcinfo, 1);
	InitFunctionCallInfoData(*fcinfo, nullptr, 1, InvalidOid, nullptr, nullptr);
	fcinfo->args[0].value = ObjectIdGetDatum(task_sequence_oid());
	fcinfo->args[0].isnull = false;
	Datum last = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(last);
}

static void
require_value(TupleTableSlot *slot, int attno)
{
	if (!slot->tts_isnull[attno - 1])
		return;
	const char *name = NameStr(TupleDescAttr(slot->tts_tupleDescriptor, attno - 1)->attname);
	ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
					errmsg("null value in column \"%s\" of relation \"tasks\" violates not-null constraint", name)));
}

static TupleTableSlot *
exec_foreign_insert(EState *, ResultRelInfo *rinfo, TupleTableSlot *slot, TupleTableSlot *)
{
	ModifyState *st = static_cast<ModifyState *>(rinfo->ri_FdwState);
	slot_getallattrs(slot);
	refuse_client_value(slot, Col_pg_cron_job_name);
	refuse_client_value(slot, Col_duration);
	refuse_client_value(slot, Col_status);
	refuse_client_value(slot, Col_error_message);
	require_value(slot, Col_jobid);
	require_value(slot, Col_username);
	require_value(slot, Col_started_at);

	NewTask task = {};
	Datum *v = slot->tts_values;
	bool *n = slot->tts_isnull;
	task.query = n[Col_query - 1] ? nullptr : TextDatumGetCString(v[Col_query - 1]);
	task.job_name = n[Col_job_name - 1] ? nullptr : TextDatumGetCString(v[Col_job_name - 1]);
	task.username = TextDatumGetCString(v[Col_username - 1]);
	task.has_started_at = true;
	task.started_at = DatumGetTimestampTz(v[Col_started_at - 1]);
	task.has_jobid = true;
	task.jobid = DatumGetInt64(v[Col_jobid - 1]);
	// Defaults only: started_at is the submission time, and a jobid the
	// sequence has not handed out yet would collide with a later task.
	if (task.started_at != GetCurrentTransactionStartTimestamp())
		refuse_non_default(slot, Col_started_at);
	if (task.jobid <= 0 || task.jobid > sequence_last_value())
		refuse_non_default(slot, Col_jobid);
	submit_task(&st->store, task, nullptr, nullptr);

	// RETURNING sees the row as stored, status included.
	Datum values[kTaskColumns];
	bool nulls[kTaskColumns];
	memcpy(values, v, sizeof(values));
	memcpy(nulls, n, sizeof(nulls));
	values[Col_status - 1] = CStringGetTextDatum("queued");
	nulls[Col_status - 1] = false;
	HeapTuple out = heap_form_tuple(slot->tts_tupleDescriptor, values, nulls);
	ExecStoreHeapTuple(out, slot, true);
	return slot;
}

static TupleTableSlot *
exec_foreign_update(EState *, ResultRelInfo *, TupleTableSlot *, TupleTableSlot *)
{
	refuse_update();
	return nullptr;
}

static TupleTableSlot *
exec_foreign_delete(EState *, ResultRelInfo *rinfo, TupleTableSlot *slot, TupleTableSlot *plan_slot)
{
	ModifyState *st = static_cast<ModifyState *>(rinfo->ri_FdwState);
	bool isnull;
	Datum d = ExecGetJunkAttribute(plan_slot, st->jobid_attno, &isnull);
	if (isnull)
		elog(ERROR, "lantern_jobid is NULL");
	int64 jobid = DatumGetInt64(d);

	HeapTuple row = store_fetch(&st->store, jobid, GetLatestSnapshot());
	if (row == nullptr)
		return nullptr; // deleted meanwhile
	// Its committed outcome makes a task ended, even while the executor is
	// still letting go of its slot: nothing writes the row after that.
	TaskRow r;
	store_read_row(&st->store, row, &r);
	if (!r.ended)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE), errmsg("cannot delete task %lld because it has not ended", (long long)jobid),
						errhint("Cancel it first with lantern.cancel_task(%lld).", (long long)jobid)));
	// Seeing a task (pg_read_all_stats) is not owning it.
	if (!superuser() && !has_privs_of_role(GetUserId(), r.run_as))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("permission denied to delete task %lld", (long long)jobid),
						errdetail("Only roles with the privileges of the role that ran the task may delete it.")));
	if (!store_delete(&st->store, row))
		return nullptr;
	Datum values[Store_natts];
	bool nulls[Store_natts];
	heap_deform_tuple(row, store_desc(&st->store), values, nulls);
	store_task_values(slot, values, nulls, nullptr);
	return slot;
}

} // namespace lantern

extern "C" Datum
lantern_fdw_handler(PG_FUNCTION_ARGS)
{
	using namespace lantern;
	FdwRoutine *r = makeNode(FdwRoutine);
	r->GetForeignRelSize = get_foreign_rel_size;
	r->GetForeignPaths = get_foreign_paths;
	r->GetForeignPlan = get_foreign_plan;
	r->BeginForeignScan = begin_foreign_scan;
	r->IterateForeignScan = iterate_foreign_scan;
	r->ReScanForeignScan = rescan_foreign_scan;
	r->EndForeignScan = end_foreign_scan;
	r->ExplainForeignScan = explain_foreign_scan;
	r->IsForeignRelUpdatable = is_foreign_rel_updatable;
	r->AddForeignUpdateTargets = add_foreign_update_targets;
	r->PlanForeignModify = plan_foreign_modify;
	r->BeginForeignModify = begin_foreign_modify;
	r->ExecForeignInsert = exec_foreign_insert;
	r->ExecForeignUpdate = exec_foreign_update;
	r->ExecForeignDelete = exec_foreign_delete;
	r->EndForeignModify = end_foreign_modify;
	r->BeginForeignInsert = begin_foreign_insert;
	r->EndForeignInsert = end_foreign_modify;
	PG_RETURN_POINTER(r);
}

extern "C" Datum
lantern_fdw_validator(PG_FUNCTION_ARGS)
{
	List *options = untransformRelOptions(PG_GETARG_DATUM(0));
	if (options != NIL) {
		DefElem *def = static_cast<DefElem *>(linitial(options));
		ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME), errmsg("invalid option \"%s\"", def->defname),
						errhint("There are no valid options in this context.")));
	}
	PG_RETURN_VOID();
}
