-- The manifest entries of the window [since, until) and the captures they
-- describe, as two views: `entries` (every entry that passes the checks
-- below) and `captures` (those that stand for a stored object with packets).
--
-- Entries live at {prefix}/_index/manifest/v1/date=YYYY-MM-DD/hour=HH/minute=MM/
-- (UTC, 10-minute slots); one capture is filed under every slot its span
-- (open .. close) overlaps, and `home_slot` is true in the first of them only.
-- Only the window's slots are read (one listing each, one GET per entry).

SET VARIABLE manifest = concat_ws('/', 's3://' || getvariable('bucket'),
                                  nullif(getvariable('prefix'), ''), '_index/manifest/v1');

-- One glob per slot (and per host, when `hosts` is set).
SET VARIABLE slot_globs = (
    SELECT list(format('{}/date={}/hour={}/minute={}/{}*.ndjson.gz', getvariable('manifest'),
                       strftime(s, '%Y-%m-%d'), strftime(s, '%H'), strftime(s, '%M'),
                       coalesce(h || '~', '')))
    FROM generate_series(time_bucket(INTERVAL 10 MINUTE, getvariable('since')),
                         getvariable('until') - INTERVAL 1 MICROSECOND,
                         INTERVAL 10 MINUTE) AS t(s),
         unnest(coalesce(getvariable('hosts')::VARCHAR[], [NULL::VARCHAR])) AS u(h)
);

-- read_json stops at a pattern that matches nothing (an idle slot): glob()
-- keeps the files that exist; with none at all the views are empty.
SET VARIABLE entry_files = (SELECT list(file ORDER BY file) FROM glob(getvariable('slot_globs')));

SET VARIABLE entries_sql = CASE WHEN getvariable('entry_files') IS NULL
    THEN 'SELECT NULL::VARCHAR AS key, NULL::VARCHAR AS host, NULL::VARCHAR AS iface,
                 NULL::BIGINT AS opened_ns, NULL::BIGINT AS closed_ns, NULL::BIGINT AS first_ns,
                 NULL::BIGINT AS last_ns, NULL::BIGINT AS packets, NULL::BIGINT AS pcap_bytes,
                 NULL::BIGINT AS size, NULL::INTEGER AS linktype, NULL::BOOLEAN AS home_slot,
                 NULL::BOOLEAN AS has_object, NULL::VARCHAR AS filename, NULL::DATE AS date,
                 NULL::INTEGER AS hour, NULL::INTEGER AS minute
          WHERE false'
    -- Columns are named, not guessed: a field no entry has yet (has_object) is
    -- NULL, and "00" stays a minute, not a string.
    ELSE 'SELECT * FROM read_json(getvariable(''entry_files''), format = ''newline_delimited'',
              filename = true, hive_partitioning = true,
              hive_types = {''date'': ''DATE'', ''hour'': ''INTEGER'', ''minute'': ''INTEGER''},
              columns = {key: ''VARCHAR'', host: ''VARCHAR'', iface: ''VARCHAR'',
                         opened_ns: ''BIGINT'', closed_ns: ''BIGINT'', first_ns: ''BIGINT'',
                         last_ns: ''BIGINT'', packets: ''BIGINT'', pcap_bytes: ''BIGINT'',
                         size: ''BIGINT'', linktype: ''INTEGER'', home_slot: ''BOOLEAN'',
                         has_object: ''BOOLEAN''})'
    END;

-- The checks `rollcap list` applies: a host writes (by IAM policy) only entries
-- whose file name starts with "HOST~", so the name must agree with the body's
-- host, and the capture it describes must lie below {prefix}/{host}/.
CREATE OR REPLACE TEMP VIEW entries AS
SELECT *,
       make_timestamp(year("date"), month("date"), day("date"), "hour", "minute", 0) AS slot
FROM query(getvariable('entries_sql'))
WHERE regexp_full_match(host, '[A-Za-z0-9][A-Za-z0-9.-]{0,62}')
  AND starts_with(parse_filename(filename), host || '~')
  AND starts_with(key, ltrim(getvariable('prefix') || '/' || host || '/', '/'));

-- A capture: an entry for a stored object (coverage entries of idle links say
-- has_object = false) with packets and their times.
CREATE OR REPLACE TEMP VIEW captures AS
SELECT * FROM entries
WHERE coalesce(has_object, true) AND packets > 0
  AND first_ns IS NOT NULL AND last_ns IS NOT NULL;
