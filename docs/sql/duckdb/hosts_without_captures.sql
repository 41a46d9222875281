-- Hosts without a capture in the window: every host that wrote an entry in
-- the `lookback` before `until` (found from entry names alone: listings, no
-- GET), less those with a packet in [since, until). Like the "no capture in
-- the window" line of `rollcap list`, which counts every host directory
-- instead (a host that never wrote an entry, e.g. rollcap 0.1.0, is not
-- seen here).
SET VARIABLE lookback_globs = (
    SELECT list(format('{}/date={}/hour={}/minute={}/*.ndjson.gz', getvariable('manifest'),
                       strftime(s, '%Y-%m-%d'), strftime(s, '%H'), strftime(s, '%M')))
    FROM generate_series(time_bucket(INTERVAL 10 MINUTE,
                                     getvariable('until') - getvariable('lookback')),
                         getvariable('until') - INTERVAL 1 MICROSECOND,
                         INTERVAL 10 MINUTE) AS t(s)
);

WITH known AS (
    SELECT DISTINCT split_part(parse_filename(file), '~', 1) AS host
    FROM glob(getvariable('lookback_globs'))
),
busy AS (
    SELECT DISTINCT host FROM captures
    WHERE first_ns < epoch_ns(getvariable('until')) AND last_ns >= epoch_ns(getvariable('since'))
)
SELECT host FROM known
WHERE regexp_full_match(host, '[A-Za-z0-9][A-Za-z0-9.-]{0,62}')
  AND host NOT IN (SELECT host FROM busy)
  AND (getvariable('hosts') IS NULL OR list_contains(getvariable('hosts')::VARCHAR[], host))
ORDER BY host;
