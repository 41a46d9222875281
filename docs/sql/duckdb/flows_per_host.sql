-- Per host, the matching flows of the window (after flows.sql): how many, in
-- how many captures, their packets and bytes, the first and last packet; the
-- totals `rollcap flows` prints after its table.
SELECT host,
       count(*) AS flows,
       count(DISTINCT key) AS captures,
       sum(packets) AS packets,
       sum(bytes) AS bytes,
       min(first_ns) AS first_ns,
       max(last_ns) AS last_ns
FROM matching
GROUP BY host
ORDER BY host;
