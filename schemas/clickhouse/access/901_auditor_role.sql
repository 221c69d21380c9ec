-- min_server_version: 20.4
-- Least privilege for auditors on servers with SQL-driven access control (ClickHouse >= 20.4):
-- a role that reads every table of this database and writes nothing. Give it to a person with
-- GRANT fairwatch_auditor TO alice. Older servers (Debian's 18.16) skip this file and use a
-- readonly profile in users.xml instead (the local stack's `auditor` user); chDB has no access
-- control and skips it too. Applied by `fairwatch migrate` (fairwatch.store.auditlog.migrate_access);
-- the migrating user needs the access_management right.
CREATE ROLE IF NOT EXISTS fairwatch_auditor;
GRANT SELECT ON * TO fairwatch_auditor;
