/*
 * pg_oncall's hooks into PostgreSQL, as plain C so that PostgreSQL's own errors pass through
 * them untouched: a hook that runs PostgreSQL code (the previous hook, standard_ProcessUtility,
 * the executor, the `role` setting's own check) lets that code's ERROR unwind with
 * PostgreSQL's siglongjmp and every field of its ErrorData intact. A Rust frame would have
 * to catch the error to stay sound and raise a copy, which is how fields got lost.
 *
 * Each hook asks pg_oncall's Rust side (src/gate/) what to do first; those functions raise
 * only pg_oncall's own refusals. Signatures that differ between PostgreSQL majors are
 * reconciled here, and only here.
 */
#include "postgres.h"

#include "catalog/objectaccess.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "plpgsql.h"
#include "storage/lwlock.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/guc_tables.h"
#include "tcop/pquery.h"
#include "utils/memutils.h"
#include "utils/timeout.h"

/* libpq/auth.h would pull in libpq-be.h and, through it, GSSAPI's headers: the hook only
 * passes the Port along (Rust reads it with pgrx's per-major definition). */
struct Port;
typedef void (*ClientAuthentication_hook_type) (struct Port *, int);
extern PGDLLIMPORT ClientAuthentication_hook_type ClientAuthentication_hook;

/* The Rust side (src/gate/hooks.rs). */
typedef struct UtilityState
{
	int			guc_nest_level;
	bool		was_in_set_role;
	bool		may_drop_extension;
} UtilityState;

extern bool pg_oncall_check_role(char **newval, void **extra, GucSource source);
extern void pg_oncall_role_assigned(void);
extern void pg_oncall_before_utility(PlannedStmt *pstmt, const char *queryString, ProcessUtilityContext context,
									 UtilityState *state);
extern void pg_oncall_utility_finished(UtilityState *state);
extern void pg_oncall_after_utility(PlannedStmt *pstmt, UtilityState *state);
extern void pg_oncall_executor_start(QueryDesc *queryDesc);
extern void pg_oncall_executor_run(QueryDesc *queryDesc);
extern void pg_oncall_executor_end(QueryDesc *queryDesc);
extern void pg_oncall_function_call(Oid functionId, bool fast_path);
extern void pg_oncall_plpgsql_statement(void);
extern void pg_oncall_cursor_fetch(const char *name);
extern void pg_oncall_client_authentication(struct Port *port, int status);

/* The SQLSTATE of pg_oncall's audit lines ("OC000"), which nothing else may claim. */
#define ERRCODE_ONCALL_AUDIT MAKE_SQLSTATE('O', 'C', '0', '0', '0')
/* What a message that claims it without being one is relabelled with (raise_exception). */
#define ERRCODE_ONCALL_AUDIT_IMPOSTOR MAKE_SQLSTATE('P', '0', '0', '0', '1')

static GucStringCheckHook original_role_check = NULL;
static GucStringAssignHook original_role_assign = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static object_access_hook_type prev_object_access = NULL;
static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;
static emit_log_hook_type prev_emit_log = NULL;
static bool emitting_audit_line = false;

/*
 * The end of the current elevation's access (shift end, staleness, time limit): a timeout
 * cancels whatever runs then, so that work that never starts a new statement (a loop in one
 * PL/pgSQL expression) stops too; the cancellation is reported as pg_oncall's refusal.
 */
static TimeoutId access_end_timeout = MAX_TIMEOUTS;
static volatile sig_atomic_t access_ended = false;
static bool access_end_reported = false;
static char *access_ended_message = NULL;
static char *access_ended_detail = NULL;
static char *access_ended_hint = NULL;

/* Runs of the executor and PL/pgSQL statements so far: check_oncall_access() decides anew
 * for each (src/api.rs). */
uint64		pg_oncall_runs = 0;

/*
 * PL/pgSQL's plugin slot (one pointer, shared through a rendezvous variable): each PL/pgSQL
 * statement reports its start there, also the simple expressions (`x := f()`, `PERFORM f()`,
 * RAISE arguments) that PL/pgSQL evaluates without the executor. A plugin that held the slot
 * before us is chained; one that takes it later is chained again at the next statement.
 */
static PLpgSQL_plugin oncall_plpgsql_plugin;
static PLpgSQL_plugin **plpgsql_plugin_slot = NULL;
static PLpgSQL_plugin *chained_plpgsql_plugin = NULL;

/* PL/pgSQL fills these in the plugin it sees (ours); the chained plugin needs them too. */
static PLpgSQL_plugin *
chained_plugin(void)
{
	PLpgSQL_plugin *chained = chained_plpgsql_plugin;

	if (chained)
	{
		chained->error_callback = oncall_plpgsql_plugin.error_callback;
		chained->assign_expr = oncall_plpgsql_plugin.assign_expr;
		chained->assign_value = oncall_plpgsql_plugin.assign_value;
		chained->eval_datum = oncall_plpgsql_plugin.eval_datum;
		chained->cast_value = oncall_plpgsql_plugin.cast_value;
	}
	return chained;
}

static void
oncall_plpgsql_func_setup(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	PLpgSQL_plugin *chained = chained_plugin();

	if (chained && chained->func_setup)
		chained->func_setup(estate, func);
}

static void
oncall_plpgsql_func_beg(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	PLpgSQL_plugin *chained = chained_plugin();

	if (chained && chained->func_beg)
		chained->func_beg(estate, func);
}

static void
oncall_plpgsql_func_end(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	PLpgSQL_plugin *chained = chained_plugin();

	if (chained && chained->func_end)
		chained->func_end(estate, func);
}

static void
oncall_plpgsql_stmt_beg(PLpgSQL_execstate *estate, PLpgSQL_stmt *stmt)
{
	PLpgSQL_plugin *chained = chained_plugin();

	pg_oncall_runs++;
	if (chained && chained->stmt_beg)
		chained->stmt_beg(estate, stmt);
	if (OidIsValid(GetCurrentRoleId()))
		pg_oncall_plpgsql_statement();
	/* FETCH and MOVE read a cursor kept from another transaction without the executor. */
	if (stmt->cmd_type == PLPGSQL_STMT_FETCH)
	{
		PLpgSQL_var *cursor = (PLpgSQL_var *) estate->datums[((PLpgSQL_stmt_fetch *) stmt)->curvar];

		if (!cursor->isnull)
			pg_oncall_cursor_fetch(TextDatumGetCString(cursor->value));
	}
}

static void
oncall_plpgsql_stmt_end(PLpgSQL_execstate *estate, PLpgSQL_stmt *stmt)
{
	PLpgSQL_plugin *chained = chained_plugin();

	if (chained && chained->stmt_end)
		chained->stmt_end(estate, stmt);
}

/* Takes PL/pgSQL's plugin slot back if a plugin loaded later took it (and chains that one). */
static inline void
hold_plpgsql_plugin_slot(void)
{
	if (plpgsql_plugin_slot && *plpgsql_plugin_slot != &oncall_plpgsql_plugin)
	{
		chained_plpgsql_plugin = *plpgsql_plugin_slot;
		*plpgsql_plugin_slot = &oncall_plpgsql_plugin;
	}
}

/*
 * The `role` setting: SET ROLE, SET LOCAL ROLE, set_config('role', ...), a function's
 * `SET role` clause, `-c role=` at login and ALTER ROLE ... SET role all pass its check hook.
 * PostgreSQL's own check runs first (existence, membership); then the gate decides.
 */
static bool
oncall_check_role(char **newval, void **extra, GucSource source)
{
	if (original_role_check && !original_role_check(newval, extra, source))
		return false;
	return pg_oncall_check_role(newval, extra, source);
}

/*
 * Each change of the current role, also those no check hook sees (RESET, the end of SET LOCAL
 * or of a function's SET clause, transaction abort): where elevations start and end. Assign
 * hooks may not fail; the Rust side only keeps books.
 */
static void
oncall_assign_role(const char *newval, void *extra)
{
	if (original_role_assign)
		original_role_assign(newval, extra);
	pg_oncall_role_assigned();
}

/*
 * Every utility statement, top-level or nested: the gate re-checks an elevated session,
 * judges statements that PostgreSQL authorizes by role membership, and keeps its catalog
 * consistent (renames of gated roles, DROP EXTENSION).
 */
static void
oncall_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	UtilityState state = {0};

	access_ended = false;		/* one caught by an EXCEPTION block, or met while idle */
	hold_plpgsql_plugin_slot();
	pg_oncall_before_utility(pstmt, queryString, context, &state);
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		pg_oncall_utility_finished(&state);
	}
	PG_END_TRY();
	pg_oncall_after_utility(pstmt, &state);
}

/* Every planned statement as it starts, nested ones included: the elevated session's re-check. */
static void
oncall_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	pg_oncall_runs++;
	access_ended = false;
	hold_plpgsql_plugin_slot();
	pg_oncall_executor_start(queryDesc);
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* Each run of a started statement: a cursor FETCH or a resumed portal reads rows long after
 * the statement started, with the privileges checked then. */
#if PG_VERSION_NUM >= 180000
static void
oncall_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count)
{
	pg_oncall_executor_run(queryDesc);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count);
	else
		standard_ExecutorRun(queryDesc, direction, count);
}
#else
static void
oncall_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	pg_oncall_executor_run(queryDesc);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}
#endif

static void
oncall_ExecutorEnd(QueryDesc *queryDesc)
{
	pg_oncall_executor_end(queryDesc);
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/* Function calls that bypass the executor: libpq's fast-path interface (PQfn, large objects)
 * reports each call here, and so does the executor when it prepares a call. */
static void
oncall_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	/* The fast path runs outside any portal; the executor, inside one. */
	if (access == OAT_FUNCTION_EXECUTE && OidIsValid(GetCurrentRoleId()))
		pg_oncall_function_call(objectId, ActivePortal == NULL);
}

/* A login, once authenticated: logging in as a role with gate_login needs it on call. */
static void
oncall_ClientAuthentication(struct Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	pg_oncall_client_authentication(port, status);
}

/* Every message on its way to the log: only pg_oncall's audit lines may carry their SQLSTATE,
 * so a user's RAISE LOG ... USING ERRCODE = 'OC000' cannot pass for one; and the cancellation
 * at the end of an elevation's access reads as the refusal it is. */
static void
oncall_emit_log(ErrorData *edata)
{
	if (edata->sqlerrcode == ERRCODE_ONCALL_AUDIT && !emitting_audit_line)
		edata->sqlerrcode = ERRCODE_ONCALL_AUDIT_IMPOSTOR;
	if (access_ended && edata->sqlerrcode == ERRCODE_QUERY_CANCELED && edata->elevel >= ERROR && access_ended_message)
	{
		access_ended = false;
		access_end_reported = true;
		edata->sqlerrcode = ERRCODE_INSUFFICIENT_PRIVILEGE;
		edata->message = pstrdup(access_ended_message);
		edata->detail = pstrdup(access_ended_detail);
		edata->hint = pstrdup(access_ended_hint);
	}
	if (prev_emit_log)
		prev_emit_log(edata);
}

static void
access_end_reached(void)
{
	access_ended = true;
	QueryCancelPending = true;
	InterruptPending = true;
}

static char *
keep(char *old, const char *text)
{
	if (old)
		pfree(old);
	return MemoryContextStrdup(TopMemoryContext, text);
}

/* Arms (or moves) the timeout at `at`, with the error to report when it cancels a statement. */
void
pg_oncall_arm_access_end(TimestampTz at, const char *message, const char *detail, const char *hint)
{
	if (access_end_timeout == MAX_TIMEOUTS)
		access_end_timeout = RegisterTimeout(USER_TIMEOUT, access_end_reached);
	access_ended_message = keep(access_ended_message, message);
	access_ended_detail = keep(access_ended_detail, detail);
	access_ended_hint = keep(access_ended_hint, hint);
	access_ended = false;
	enable_timeout_at(access_end_timeout, at);
}

/* Whether a statement was stopped at the end of access since the last call (its audit line is
 * written from a safer place than the error report). */
bool
pg_oncall_take_access_end_reported(void)
{
	bool		reported = access_end_reported;

	access_end_reported = false;
	return reported;
}

/* The elevation is over: no timeout; a cancellation pending from it is left to statement hooks. */
void
pg_oncall_disarm_access_end(void)
{
	if (access_end_timeout != MAX_TIMEOUTS)
		disable_timeout(access_end_timeout, false);
}

/* One audit line: LOG, SQLSTATE OC000, no STATEMENT or CONTEXT lines after it. */
void
pg_oncall_audit_line(const char *message)
{
	emitting_audit_line = true;
	PG_TRY();
	{
		ereport(LOG,
				errcode(ERRCODE_ONCALL_AUDIT),
				errmsg_internal("%s", message),
				errhidestmt(true),
				errhidecontext(true));
	}
	PG_FINALLY();
	{
		emitting_audit_line = false;
	}
	PG_END_TRY();
}

static bool
wrap_role_check(void)
{
	struct config_generic **variables;
	int			count;

#if PG_VERSION_NUM >= 160000
	variables = get_guc_variables(&count);
#else
	variables = get_guc_variables();
	count = GetNumConfigOptions();
#endif
	for (int i = 0; i < count; i++)
	{
		struct config_generic *variable = variables[i];

		if (variable->vartype == PGC_STRING && strcmp(variable->name, "role") == 0)
		{
			struct config_string *role = (struct config_string *) variable;

			original_role_check = role->check_hook;
			role->check_hook = oncall_check_role;
			original_role_assign = role->assign_hook;
			role->assign_hook = oncall_assign_role;
			return true;
		}
	}
	return false;
}

/* From _PG_init, in the postmaster: false when the `role` setting was not found. */
bool
pg_oncall_install_hooks(void)
{
	if (!wrap_role_check())
		return false;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = oncall_ProcessUtility;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = oncall_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = oncall_ExecutorRun;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = oncall_ExecutorEnd;
	prev_object_access = object_access_hook;
	object_access_hook = oncall_object_access;
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = oncall_ClientAuthentication;
	prev_emit_log = emit_log_hook;
	emit_log_hook = oncall_emit_log;
	oncall_plpgsql_plugin.func_setup = oncall_plpgsql_func_setup;
	oncall_plpgsql_plugin.func_beg = oncall_plpgsql_func_beg;
	oncall_plpgsql_plugin.func_end = oncall_plpgsql_func_end;
	oncall_plpgsql_plugin.stmt_beg = oncall_plpgsql_stmt_beg;
	oncall_plpgsql_plugin.stmt_end = oncall_plpgsql_stmt_end;
	plpgsql_plugin_slot = (PLpgSQL_plugin **) find_rendezvous_variable("PLpgSQL_plugin");
	hold_plpgsql_plugin_slot();
	return true;
}

/* AddinShmemInitLock, a macro: serializes the creation of add-in shared memory. */
LWLock *
pg_oncall_addin_shmem_init_lock(void)
{
	return AddinShmemInitLock;
}
