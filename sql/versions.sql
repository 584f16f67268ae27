--
-- versions: a database updated from 0.1.0 ends up with the same objects as
-- a fresh install of the default version.
--
SELECT current_database() AS main_db \gset
-- Every member of lantern_fdw with what defines it: function definitions and
-- privileges, relation columns, defaults, view definitions and privileges,
-- schema privileges, comments.
\set objects 'SELECT pg_describe_object(d.classid, d.objid, 0) || coalesce(chr(10) || CASE d.classid WHEN $$pg_proc$$::regclass THEN (SELECT pg_get_functiondef(p.oid) || coalesce(p.proacl::text, $$$$) FROM pg_proc p WHERE p.oid = d.objid) WHEN $$pg_class$$::regclass THEN (SELECT c.relkind::text || coalesce(c.relacl::text, $$$$) || CASE WHEN c.relkind = $$v$$ THEN pg_get_viewdef(c.oid) ELSE $$$$ END || coalesce((SELECT string_agg(a.attname || $$ $$ || format_type(a.atttypid, a.atttypmod) || $$ $$ || a.attnotnull || coalesce($$ $$ || pg_get_expr(ad.adbin, ad.adrelid), $$$$), $$, $$ ORDER BY a.attnum) FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), $$$$) FROM pg_class c WHERE c.oid = d.objid) WHEN $$pg_namespace$$::regclass THEN (SELECT coalesce(n.nspacl::text, $$$$) FROM pg_namespace n WHERE n.oid = d.objid) END, $$$$) || coalesce(chr(10) || (SELECT description FROM pg_description WHERE objoid = d.objid AND classoid = d.classid AND objsubid = 0), $$$$) AS object FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid WHERE d.refclassid = $$pg_extension$$::regclass AND d.deptype = $$e$$ AND e.extname = $$lantern_fdw$$'

CREATE DATABASE regress_versions_fresh;
\c regress_versions_fresh
CREATE EXTENSION lantern_fdw;
SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw';
-- The objects of the default version.
SELECT split_part(object, chr(10), 1) AS object FROM (:objects) o ORDER BY 1;
SELECT md5(string_agg(object, chr(10) ORDER BY object)) AS fresh_md5, count(*) AS fresh_count FROM (:objects) o \gset

\c :main_db
CREATE DATABASE regress_versions_updated;
\c regress_versions_updated
CREATE EXTENSION lantern_fdw VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw';
ALTER EXTENSION lantern_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw';
SELECT count(*) = :fresh_count AS same_count, md5(string_agg(object, chr(10) ORDER BY object)) = :'fresh_md5' AS same_objects FROM (:objects) o;

\c :main_db
DROP DATABASE regress_versions_fresh;
DROP DATABASE regress_versions_updated;
