-- Captures per host and hour of the window: a capture counts in every hour
-- (cut to the window) that holds one of its packets, exactly as
-- `rollcap list --since <hour> --until <hour + 1h>` would list it.
--
-- Counted once: of a capture's rows in the hour's slots, the one in its home
-- slot, or in the hour's first slot when it began before (its slots follow
-- each other, so it has a row there).
WITH hours AS (
    SELECT greatest(h, getvariable('since')) AS lo,
           least(h + INTERVAL 1 HOUR, getvariable('until')) AS hi
    FROM generate_series(date_trunc('hour', getvariable('since')),
                         getvariable('until') - INTERVAL 1 MICROSECOND,
                         INTERVAL 1 HOUR) AS t(h)
)
SELECT c.host,
       date_trunc('hour', h.lo) AS hour,
       count(*) AS captures,
       sum(c.packets) AS packets,
       sum(c.size) AS stored_bytes
FROM captures AS c
JOIN hours AS h
  ON c.slot >= time_bucket(INTERVAL 10 MINUTE, h.lo) AND c.slot < h.hi
 AND (c.home_slot OR c.slot = time_bucket(INTERVAL 10 MINUTE, h.lo))
 AND c.first_ns < epoch_ns(h.hi) AND c.last_ns >= epoch_ns(h.lo)
GROUP BY ALL
ORDER BY hour, c.host;
