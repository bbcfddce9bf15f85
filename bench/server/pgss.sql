-- Statement profile of a bench database from pg_stat_statements (bench/server/run.sh with BENCH_PRIVATE_PG=1).
-- Variables: db (the bench database), jobs (the server's jobs in the run, for the per-1,000-jobs columns).
-- Usage: psql -d <db> -v db=<db> -v jobs=<n> -f bench/server/pgss.sql
\pset footer off
\echo 'pg_stat_statements of database' :db ', top 15 by total_exec_time (' :jobs 'server jobs):'
WITH s AS (
    SELECT * FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = :'db')
), t AS (
    SELECT sum(total_exec_time) AS total FROM s
)
SELECT calls,
       round(total_exec_time::numeric, 1) AS total_ms,
       round((100 * total_exec_time / nullif(t.total, 0))::numeric, 1) AS pct,
       round(mean_exec_time::numeric, 3) AS mean_ms,
       rows,
       round((total_exec_time * 1000 / nullif(:jobs, 0))::numeric, 1) AS ms_per_1k_jobs,
       round((calls * 1000.0 / nullif(:jobs, 0))::numeric, 1) AS calls_per_1k_jobs,
       left(regexp_replace(query, '\s+', ' ', 'g'), 120) AS query
FROM s, t
ORDER BY total_exec_time DESC
LIMIT 15;
SELECT count(*) AS statements,
       sum(calls) AS calls,
       round(sum(total_exec_time)::numeric, 1) AS total_ms,
       round((sum(total_exec_time) * 1000 / nullif(:jobs, 0))::numeric, 1) AS ms_per_1k_jobs,
       round((sum(calls) * 1000.0 / nullif(:jobs, 0))::numeric, 1) AS calls_per_1k_jobs
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = :'db');
