-- rollcap's manifest entries as a Trino table (Hive connector, with a Hive
-- metastore or AWS Glue), partitions by projection: the same table
-- properties Athena reads (projection.*, storage.location.template), so one
-- Glue table serves both. Needs a Trino whose Hive connector has partition
-- projection (partition_projection_* properties). Replace my-bucket/caps
-- in both places. Not run by rollcap's tests; docs/sql/duckdb/ is.
-- docs/sql/athena/captures_per_host_hour.sql runs here as well.
CREATE TABLE hive.rollcap.rollcap_manifest (
    "key"       varchar,
    host        varchar,
    iface       varchar,
    opened_ns   bigint,
    closed_ns   bigint,
    first_ns    bigint,
    last_ns     bigint,
    packets     bigint,
    pcap_bytes  bigint,
    size        bigint,
    linktype    integer,
    home_slot   boolean,
    has_object  boolean,
    "date"      varchar WITH (
        partition_projection_type = 'DATE',
        partition_projection_format = 'yyyy-MM-dd',
        partition_projection_range = ARRAY['2026-01-01', 'NOW'],
        partition_projection_interval = 1,
        partition_projection_interval_unit = 'DAYS'),
    "hour"      varchar WITH (
        partition_projection_type = 'INTEGER',
        partition_projection_range = ARRAY['0', '23'],
        partition_projection_digits = 2),
    "minute"    varchar WITH (
        partition_projection_type = 'INTEGER',
        partition_projection_range = ARRAY['0', '50'],
        partition_projection_interval = 10,
        partition_projection_digits = 2)
)
WITH (
    format = 'JSON',  -- the codec comes from the file extension: .gz
    external_location = 's3://my-bucket/caps/_index/manifest/v1/',
    partitioned_by = ARRAY['date', 'hour', 'minute'],
    partition_projection_enabled = true,
    partition_projection_location_template =
        's3://my-bucket/caps/_index/manifest/v1/date=${date}/hour=${hour}/minute=${minute}/'
);
