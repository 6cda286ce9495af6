/*
 * The connection's Port, whose layout differs between majors: the login gate reads the user
 * name from the server's own definition (pgrx 0.18.1's differs from PostgreSQL 17's, which
 * dropped canAcceptConnections). Compiled against the headers of the major being built for.
 */
#include "postgres.h"

#include "libpq/libpq-be.h"
#include "miscadmin.h"

const char *
pg_oncall_port_user_name(const Port *port)
{
	return port->user_name;
}

/* This backend's client address as text ("[local]" over a Unix socket); NULL without a client. */
const char *
pg_oncall_client_host(void)
{
	return MyProcPort ? MyProcPort->remote_host : NULL;
}
