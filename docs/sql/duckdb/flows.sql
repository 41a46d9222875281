-- The flow summaries of the window [since, until) as two views: `flows` (one
-- row per flow with a packet in the window, from summaries that pass the
-- checks below) and `matching` (those with the `ip`, `port` and `proto` of
-- params.sql, as `rollcap flows --ip --port --proto` answers).
--
-- Summaries live at {prefix}/_index/flows/v1/date=YYYY-MM-DD/hour=HH/minute=MM/
-- (UTC), one per capture, in the slot where the capture began: the slots
-- read start `flow_lookback` before the window (a capture that began then
-- still reaches into it). One listing per slot (per host with `hosts`).

SET VARIABLE flow_index = concat_ws('/', 's3://' || getvariable('bucket'),
                                    nullif(getvariable('prefix'), ''), '_index/flows/v1');

SET VARIABLE flow_globs = (
    SELECT list(format('{}/date={}/hour={}/minute={}/{}*.ndjson.gz', getvariable('flow_index'),
                       strftime(s, '%Y-%m-%d'), strftime(s, '%H'), strftime(s, '%M'),
                       coalesce(h || '~', '')))
    FROM generate_series(time_bucket(INTERVAL 10 MINUTE,
                                     getvariable('since') - getvariable('flow_lookback')),
                         getvariable('until') - INTERVAL 1 MICROSECOND,
                         INTERVAL 10 MINUTE) AS t(s),
         unnest(coalesce(getvariable('hosts')::VARCHAR[], [NULL::VARCHAR])) AS u(h)
);

-- as in entries.sql: glob() keeps the slots that exist
SET VARIABLE flow_files = (SELECT list(file ORDER BY file) FROM glob(getvariable('flow_globs')));

SET VARIABLE flows_sql = CASE WHEN getvariable('flow_files') IS NULL
    THEN 'SELECT NULL::VARCHAR AS "row", NULL::VARCHAR AS host, NULL::VARCHAR AS iface,
                 NULL::VARCHAR AS key, NULL::INTEGER AS linktype, NULL::INTEGER[] AS vlan,
                 NULL::INTEGER AS ip, NULL::INTEGER AS proto, NULL::VARCHAR AS src,
                 NULL::VARCHAR AS dst, NULL::INTEGER AS sport, NULL::INTEGER AS dport,
                 NULL::INTEGER AS icmp_type, NULL::INTEGER AS icmp_code,
                 NULL::BIGINT AS first_ns, NULL::BIGINT AS last_ns, NULL::BIGINT AS packets,
                 NULL::BIGINT AS bytes, NULL::VARCHAR AS community_id,
                 NULL::BOOLEAN AS complete, NULL::VARCHAR AS filename
          WHERE false'
    ELSE 'SELECT * FROM read_json(getvariable(''flow_files''), format = ''newline_delimited'',
              filename = true, hive_partitioning = false,
              columns = {"row": ''VARCHAR'', host: ''VARCHAR'', iface: ''VARCHAR'',
                         key: ''VARCHAR'', linktype: ''INTEGER'', vlan: ''INTEGER[]'',
                         ip: ''INTEGER'', proto: ''INTEGER'', src: ''VARCHAR'', dst: ''VARCHAR'',
                         sport: ''INTEGER'', dport: ''INTEGER'', icmp_type: ''INTEGER'',
                         icmp_code: ''INTEGER'', first_ns: ''BIGINT'', last_ns: ''BIGINT'',
                         packets: ''BIGINT'', bytes: ''BIGINT'', community_id: ''VARCHAR'',
                         complete: ''BOOLEAN''})'
    END;

-- The checks `rollcap flows` applies: the file name (which a host's IAM policy
-- lets it write only as "HOST~...") names the host, interface and capture the
-- rows name, and the capture lies below {prefix}/{host}/.
CREATE OR REPLACE TEMP VIEW flow_rows AS
SELECT * EXCLUDE (filename), filename AS summary
FROM query(getvariable('flows_sql'))
WHERE regexp_full_match(host, '[A-Za-z0-9][A-Za-z0-9.-]{0,62}')
  AND starts_with(parse_filename(filename), host || '~' || iface || '~')
  AND starts_with(key, ltrim(getvariable('prefix') || '/' || host || '/', '/'))
  AND ends_with(parse_filename(filename),
                '~' || replace(CASE WHEN getvariable('prefix') = '' THEN key
                                    ELSE substr(key, length(getvariable('prefix')) + 2) END,
                               '/', '~') || '.ndjson.gz');

CREATE OR REPLACE TEMP VIEW flows AS
SELECT * FROM flow_rows
WHERE "row" = 'flow'
  AND first_ns < epoch_ns(getvariable('until')) AND last_ns >= epoch_ns(getvariable('since'));

CREATE OR REPLACE TEMP VIEW matching AS
SELECT * FROM flows
WHERE (getvariable('ip') IS NULL OR src = getvariable('ip') OR dst = getvariable('ip'))
  AND (getvariable('port') IS NULL OR sport = getvariable('port') OR dport = getvariable('port'))
  AND (getvariable('proto') IS NULL OR proto = getvariable('proto'));
