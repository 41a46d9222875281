-- Athena / Trino: captures per host and hour of 2026-11-26 11:00-14:00 UTC,
-- with the checks `rollcap list` applies and each capture counted once per
-- hour (docs/sql/duckdb/captures_per_host_hour.sql explains the rule; this
-- is the same query for whole hours). Not run by rollcap's tests.
-- Replace caps/ (the prefix) and the window. Always bound "date" (and "hour"):
-- projection then lists only those partitions.
SELECT host,
       "date", "hour",
       count(*)     AS captures,
       sum(packets) AS packets
FROM rollcap_manifest
WHERE "date" = '2026-11-26' AND "hour" BETWEEN '11' AND '13'
  AND (home_slot OR "minute" = '00')
  AND coalesce(has_object, true) AND packets > 0
  AND first_ns IS NOT NULL AND last_ns IS NOT NULL
  -- a packet in the hour (epoch ns of the partition's hour)
  AND first_ns < (to_unixtime(from_iso8601_timestamp("date" || 'T' || "hour" || ':00:00Z'))
                  + 3600) * 1000000000
  AND last_ns >= to_unixtime(from_iso8601_timestamp("date" || 'T' || "hour" || ':00:00Z'))
                  * 1000000000
  -- the entry's name starts with its body's host; its capture lies below caps/HOST/
  AND regexp_like(host, '^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$')
  AND starts_with(element_at(split("$path", '/'), -1), host || '~')
  AND starts_with("key", 'caps/' || host || '/')
GROUP BY host, "date", "hour"
ORDER BY "date", "hour", host;
