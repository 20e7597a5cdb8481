-- qsign: one PostgreSQL role and one schema per service, in the qsign database.
--
--   identity, consent, lifecycle, signer, tsa,  login roles; each owns the schema of its name
--   web                                         and nothing else (web: the browser sessions its
--                                               replicas share). The gateway has no database
--                                               role.
--   qsign_audit                            NOLOGIN; owns every <schema>.audit_log, so that a
--                                          service may only SELECT and INSERT its audit log.
--   audit                                  login role of `qsign-audit` (sign-heads, verify,
--                                          export): SELECT on every service's audit_log (the
--                                          chains) and nothing else of theirs; owns schema
--                                          audit, where it appends the signed chain heads
--                                          (audit.chain_heads: handed to qsign_audit like the
--                                          audit logs; audit keeps SELECT, INSERT).
--
-- Each service creates its tables itself: versioned migrations run at start-up, as the service's
-- role, serialized across replicas by an advisory lock (common/db/migrate.h). This file only sets
-- the stage, and installs two event triggers that keep the audit logs append-only:
--
--   * when a migration has created <schema>.audit_log with its two refusal triggers, the table
--     and its trigger function are handed to qsign_audit; the service keeps SELECT and INSERT.
--     The table gets its indexes by target and by actor here too (the owner's job).
--     Without ownership it can neither UPDATE, DELETE, TRUNCATE, ALTER (DISABLE TRIGGER) nor
--     GRANT itself anything on it.
--   * a schema owner may DROP any object in its schema, so drops of an audit log, its triggers
--     or trigger function (also through DROP SCHEMA ... CASCADE) are refused to everyone but a
--     superuser. Renaming the schema needs CREATE on the database, which no service has.
--
-- Run as a superuser, in the qsign database, once per database and again after every change to
-- this file (it is idempotent, and hands over audit logs created before it was installed):
--
--   psql -v ON_ERROR_STOP=1 --single-transaction -d qsign -f roles.sql
--
-- Authentication is set where the deployment decides it: CloudNativePG's managed.roles
-- (k8s/base/postgres.yaml: TLS client certificates, no password) or ALTER ROLE ... PASSWORD for
-- a host install (docs/operations.md). The roles are created with LOGIN but without a password,
-- so nobody logs in with a password before that.
--
-- k8s/base/postgres-roles.yaml carries this file as a ConfigMap (kustomize reads files only below
-- its root): regenerate it with `python3 tests/k8s/check_manifests.py --sync-roles k8s`; the
-- manifest test fails while the two differ.
--
-- Plain SQL only, no psql meta-commands: CloudNativePG runs this file at bootstrap.

-- Roles. NOINHERIT and no attributes: a service role can do nothing beyond what is granted here.
DO $roles$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['identity', 'consent', 'lifecycle', 'signer', 'tsa', 'web'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE '
                     'NOREPLICATION NOBYPASSRLS', r);
    END IF;
    EXECUTE format('COMMENT ON ROLE %I IS %L', r, 'qsign ' || r || ' service: owns schema ' || r);
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qsign_audit') THEN
    CREATE ROLE qsign_audit NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
      NOBYPASSRLS;
  END IF;
  COMMENT ON ROLE qsign_audit IS 'qsign: owns the append-only audit_log tables; never logs in';
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit') THEN
    CREATE ROLE audit LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
      NOBYPASSRLS;
  END IF;
  COMMENT ON ROLE audit IS
    'qsign-audit: reads every audit_log, writes the signed heads in schema audit';
END
$roles$;

-- The database: services may connect, nobody else by default, nobody creates schemas.
DO $database$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO identity, consent, lifecycle, signer, tsa, '
                 'web, audit', current_database());
END
$database$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- One schema per service, owned by its role; other roles have no access to it (but for the audit
-- role's SELECT on each audit_log, granted below). Schema audit holds the signed chain heads.
DO $schemas$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['identity', 'consent', 'lifecycle', 'signer', 'tsa', 'web', 'audit'] LOOP
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', r, r);
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r, r);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', r);
  END LOOP;
END
$schemas$;

-- The event-trigger functions live in a schema no service can use.
CREATE SCHEMA IF NOT EXISTS qsign_admin;
REVOKE ALL ON SCHEMA qsign_admin FROM PUBLIC;
COMMENT ON SCHEMA qsign_admin IS 'qsign: superuser-owned guards of the service schemas';

-- Hands every complete audit log still owned by its service to qsign_audit. Runs after each
-- CREATE TABLE / CREATE TRIGGER (and once below); the service's first migration creates the table
-- and then its two triggers, so the hand-over happens inside that migration's transaction.
CREATE OR REPLACE FUNCTION qsign_admin.hand_over_audit_logs() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  t record;
BEGIN
  FOR t IN
    SELECT n.nspname AS schema_name, pg_get_userbyid(n.nspowner) AS service_role
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'audit_log' AND c.relkind = 'r'
      AND n.nspname IN ('identity', 'consent', 'lifecycle', 'signer', 'tsa')
      AND c.relowner <> 'qsign_audit'::regrole
      AND (SELECT count(*) FROM pg_trigger g
           WHERE g.tgrelid = c.oid AND NOT g.tgisinternal AND g.tgenabled <> 'D'
             AND g.tgname IN ('audit_log_no_update_delete', 'audit_log_no_truncate')) = 2
  LOOP
    EXECUTE format('ALTER TABLE %I.audit_log OWNER TO qsign_audit', t.schema_name);
    IF to_regprocedure(format('%I.audit_log_refuse_change()', t.schema_name)) IS NOT NULL THEN
      EXECUTE format('ALTER FUNCTION %I.audit_log_refuse_change() OWNER TO qsign_audit',
                     t.schema_name);
    END IF;
    EXECUTE format('REVOKE ALL ON TABLE %I.audit_log FROM PUBLIC, %I', t.schema_name,
                   t.service_role);
    EXECUTE format('GRANT SELECT, INSERT ON TABLE %I.audit_log TO %I', t.schema_name,
                   t.service_role);
    RAISE NOTICE 'qsign: %.audit_log handed to qsign_audit; % keeps SELECT, INSERT',
      t.schema_name, t.service_role;
  END LOOP;
  -- Each service reads its audit log by target and by actor (ListAccountAudit: an account's
  -- trail in the RA console). Only the owner may index a table, so the indexes of the logs
  -- qsign_audit owns are made here; a service makes them itself only while it still owns its log
  -- (common/db/audit.h AuditIndexSql). Building them on a large log blocks its appends meanwhile.
  FOR t IN
    SELECT n.nspname AS schema_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'audit_log' AND c.relkind = 'r'
      AND n.nspname IN ('identity', 'consent', 'lifecycle', 'signer', 'tsa')
      AND c.relowner = 'qsign_audit'::regrole
      AND (to_regclass(format('%I.audit_log_target', n.nspname)) IS NULL
           OR to_regclass(format('%I.audit_log_actor', n.nspname)) IS NULL)
  LOOP
    EXECUTE format('CREATE INDEX IF NOT EXISTS audit_log_target ON %I.audit_log (target, at)',
                   t.schema_name);
    EXECUTE format('CREATE INDEX IF NOT EXISTS audit_log_actor ON %I.audit_log (actor, at)',
                   t.schema_name);
    RAISE NOTICE 'qsign: %.audit_log indexed by target and by actor', t.schema_name;
  END LOOP;
  -- The signed chain heads (qsign-audit's migration: audit.chain_heads and its two refusal
  -- triggers) are handed over the same way: the audit role keeps SELECT and INSERT, so that it
  -- cannot rewrite or drop a head it signed either.
  IF (SELECT count(*) FROM pg_class c JOIN pg_trigger g ON g.tgrelid = c.oid
      WHERE c.oid = to_regclass('audit.chain_heads') AND c.relowner <> 'qsign_audit'::regrole
        AND NOT g.tgisinternal AND g.tgenabled <> 'D'
        AND g.tgname IN ('chain_heads_no_update_delete', 'chain_heads_no_truncate')) = 2 THEN
    ALTER TABLE audit.chain_heads OWNER TO qsign_audit;
    IF to_regprocedure('audit.chain_heads_refuse_change()') IS NOT NULL THEN
      ALTER FUNCTION audit.chain_heads_refuse_change() OWNER TO qsign_audit;
    END IF;
    REVOKE ALL ON TABLE audit.chain_heads FROM PUBLIC, audit;
    GRANT SELECT, INSERT ON TABLE audit.chain_heads TO audit;
    RAISE NOTICE 'qsign: audit.chain_heads handed to qsign_audit; audit keeps SELECT, INSERT';
  END IF;
  -- The audit role reads every chain (sign-heads signs their heads, verify and export read
  -- them): USAGE on the schema, SELECT on its audit_log; no other table of the schema.
  FOR t IN
    SELECT n.nspname AS schema_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'audit_log' AND c.relkind = 'r'
      AND n.nspname IN ('identity', 'consent', 'lifecycle', 'signer', 'tsa')
      AND NOT has_table_privilege('audit', c.oid, 'SELECT')
  LOOP
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO audit', t.schema_name);
    EXECUTE format('GRANT SELECT ON TABLE %I.audit_log TO audit', t.schema_name);
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION qsign_admin.hand_over_audit_logs() FROM PUBLIC;

CREATE OR REPLACE FUNCTION qsign_admin.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM qsign_admin.hand_over_audit_logs();
END
$fn$;

-- Refuses, to everyone but a superuser, drops that would remove or defang an audit log.
CREATE OR REPLACE FUNCTION qsign_admin.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  o record;
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
    RETURN;
  END IF;
  FOR o IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    -- Triggers carry no schema_name; their identity ends in "on <schema>.audit_log".
    IF (position('audit_log' IN o.object_identity) > 0
        AND (o.schema_name IN ('identity', 'consent', 'lifecycle', 'signer', 'tsa')
             OR o.object_identity ~ ' on (identity|consent|lifecycle|signer|tsa)\.audit_log$'))
       OR (position('chain_heads' IN o.object_identity) > 0
           AND (o.schema_name = 'audit' OR o.object_identity ~ ' on audit\.chain_heads$')) THEN
      RAISE EXCEPTION 'qsign: % % is part of the append-only audit log; only a superuser may drop it',
        o.object_type, o.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END LOOP;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS qsign_audit_log_hand_over;
CREATE EVENT TRIGGER qsign_audit_log_hand_over ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TRIGGER')
  EXECUTE FUNCTION qsign_admin.on_ddl_end();

DROP EVENT TRIGGER IF EXISTS qsign_audit_log_no_drop;
CREATE EVENT TRIGGER qsign_audit_log_no_drop ON sql_drop
  EXECUTE FUNCTION qsign_admin.on_sql_drop();

-- Audit logs migrated before this file was installed (or by a superuser) are handed over now.
SELECT qsign_admin.hand_over_audit_logs();
