-- rollcap's manifest entries in DuckDB: the parameters every query here reads.
-- Run this (edited) first, then entries.sql, then any query file:
--   duckdb -c ".read docs/sql/duckdb/params.sql" -c ".read docs/sql/duckdb/entries.sql" \
--          -c ".read docs/sql/duckdb/captures_per_host_hour.sql"
-- Needs the httpfs extension and an S3 secret (docs/sql/README.md).
SET VARIABLE bucket = 'my-bucket';
SET VARIABLE prefix = 'caps';                          -- offload.destination's prefix ('' for none)
SET VARIABLE since = TIMESTAMP '2026-11-26 12:00:00';  -- UTC, included
SET VARIABLE until = TIMESTAMP '2026-11-26 13:00:00';  -- UTC, excluded
SET VARIABLE minute = TIMESTAMP '2026-11-26 12:07:00'; -- objects_covering_minute.sql (in the window)
SET VARIABLE hosts = NULL::VARCHAR[];                  -- or ['web1', 'db1']: only their entries are read
SET VARIABLE lookback = INTERVAL 1 DAY;                -- hosts_without_captures.sql: "every host"
                                                       -- is every host with an entry this long
                                                       -- before `until`
-- flows.sql (the flow index, docs/flows.md): how far before `since` a capture
-- that reaches into the window may have begun (capture.rotate_seconds + 1 min),
-- and the flows wanted (NULL: any)
SET VARIABLE flow_lookback = INTERVAL 11 MINUTE;
SET VARIABLE ip = NULL::VARCHAR;                       -- e.g. '203.0.113.7' (as written: canonical)
SET VARIABLE port = NULL::INTEGER;                     -- TCP/UDP/SCTP port, either side
SET VARIABLE proto = NULL::INTEGER;                    -- 6 tcp, 17 udp, 1 icmp, 58 icmp6
