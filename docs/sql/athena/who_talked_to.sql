-- Athena / Trino: which hosts saw 203.0.113.7 between 2026-11-26 12:00 and
-- 13:00 UTC, with whom, when: `rollcap flows --ip 203.0.113.7 --since
-- '2026-11-26 12:00' --until '2026-11-26 13:00'`, from the rollcap_flows table
-- (athena/flows_table.sql, trino/flows_table.sql). Not run by rollcap's tests;
-- docs/sql/duckdb/who_talked_to.sql is the same query, tested.
-- A summary is filed in the slot where its capture began: read from one
-- rotation (here 10 minutes) before the window, so 11:50 onwards.
SELECT host, iface, "key", proto, src, sport, dst, dport, icmp_type, icmp_code, vlan,
       from_unixtime(first_ns / 1e9) AS first_packet,  -- UTC
       from_unixtime(last_ns / 1e9)  AS last_packet,
       packets, bytes, community_id
FROM rollcap_flows
WHERE "row" = 'flow'
  AND (("date" = '2026-11-26' AND "hour" = '11' AND "minute" = '50')
       OR ("date" = '2026-11-26' AND "hour" = '12'))
  AND first_ns < to_unixtime(from_iso8601_timestamp('2026-11-26T13:00:00Z')) * 1000000000
  AND last_ns >= to_unixtime(from_iso8601_timestamp('2026-11-26T12:00:00Z')) * 1000000000
  AND (src = '203.0.113.7' OR dst = '203.0.113.7')
  -- the checks of docs/sql/README.md: the file name names the rows' host,
  -- interface and capture; the capture lies below caps/HOST/
  AND regexp_like(host, '^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$')
  AND starts_with(element_at(split("$path", '/'), -1), host || '~' || iface || '~')
  AND substr(element_at(split("$path", '/'), -1),
             -length('~' || replace(substr("key", length('caps/') + 1), '/', '~') || '.ndjson.gz'))
      = '~' || replace(substr("key", length('caps/') + 1), '/', '~') || '.ndjson.gz'
  AND starts_with("key", 'caps/' || host || '/')
ORDER BY host, first_ns;
