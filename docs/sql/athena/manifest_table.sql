-- rollcap's manifest entries as an Athena table (engine v3), partitions by
-- projection: no crawler, no MSCK REPAIR, no partition to add as days pass.
-- Replace my-bucket/caps (the offload's destination) in both places.
-- Not run by rollcap's tests (no Athena here); docs/sql/duckdb/ is.
CREATE EXTERNAL TABLE rollcap_manifest (
    `key`        string,   -- the capture's object key
    host         string,
    iface        string,
    opened_ns    bigint,   -- epoch ns, UTC
    closed_ns    bigint,
    first_ns     bigint,   -- first/last packet; NULL for a file without packets
    last_ns      bigint,
    packets      bigint,
    pcap_bytes   bigint,
    size         bigint,   -- stored bytes
    linktype     int,
    home_slot    boolean,  -- true in the first slot of the capture's span only
    has_object   boolean   -- false: coverage of an idle link, no object (absent: true)
)
-- Strings, zero-padded as in the keys ('2026-11-26', '09', '00'): compare them as strings.
PARTITIONED BY (`date` string, `hour` string, `minute` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'   -- .ndjson.gz: gzip by extension
LOCATION 's3://my-bucket/caps/_index/manifest/v1/'
TBLPROPERTIES (
    'projection.enabled'            = 'true',
    'projection.date.type'          = 'date',
    'projection.date.format'        = 'yyyy-MM-dd',
    'projection.date.range'         = '2026-01-01,NOW',
    'projection.date.interval'      = '1',
    'projection.date.interval.unit' = 'DAYS',
    'projection.hour.type'          = 'integer',
    'projection.hour.range'         = '0,23',
    'projection.hour.digits'        = '2',
    'projection.minute.type'        = 'integer',
    'projection.minute.range'       = '0,50',
    'projection.minute.interval'    = '10',
    'projection.minute.digits'      = '2',
    'storage.location.template'     =
        's3://my-bucket/caps/_index/manifest/v1/date=${date}/hour=${hour}/minute=${minute}/'
);
