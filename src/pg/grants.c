/*
 * Role grants as the gate needs them, read from PostgreSQL's catalog cache. The shape of
 * pg_auth_members differs between majors (PostgreSQL 16 added per-grant INHERIT and SET
 * options), which the server headers of the major being built for resolve here.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_auth_members.h"
#include "utils/catcache.h"
#include "utils/syscache.h"

/*
 * The roles `member` is a direct member of by a grant it may use to become them: any grant
 * before PostgreSQL 16, a grant WITH SET TRUE from 16 on (SET ROLE and ownership changes need
 * it). Writes at most `max` of them into `roles`; returns how many there are.
 */
int
pg_oncall_role_grants(Oid member, Oid *roles, int max)
{
	CatCList   *grants = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(member));
	int			n = 0;

	for (int i = 0; i < grants->n_members; i++)
	{
		Form_pg_auth_members grant = (Form_pg_auth_members) GETSTRUCT(&grants->members[i]->tuple);

#if PG_VERSION_NUM >= 160000
		if (!grant->set_option)
			continue;
#endif
		if (n < max)
			roles[n] = grant->roleid;
		n++;
	}
	ReleaseSysCacheList(grants);
	return n;
}
