-- The stored objects that hold packets of one minute [minute, minute + 1 min)
-- (the minute must lie in the window entries.sql read), as
-- `rollcap list --since <minute> --until <minute + 1m>` lists them. The
-- minute lies in one 10-minute slot, where each capture has one row.
SELECT key, host, iface,
       make_timestamp(first_ns // 1000) AS first_packet,  -- UTC
       make_timestamp(last_ns // 1000) AS last_packet,
       packets, size
FROM captures
WHERE slot = time_bucket(INTERVAL 10 MINUTE, getvariable('minute'))
  AND first_ns < epoch_ns(getvariable('minute') + INTERVAL 1 MINUTE)
  AND last_ns >= epoch_ns(getvariable('minute'))
ORDER BY first_ns, key;
