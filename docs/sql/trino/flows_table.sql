-- rollcap's flow summaries (docs/flows.md) as a Trino table (Hive connector
-- with partition projection), like trino/manifest_table.sql; the same Glue
-- table serves Athena (athena/flows_table.sql). Replace my-bucket/caps in
-- both places. docs/sql/athena/who_talked_to.sql runs here as well.
-- Not run by rollcap's tests; docs/sql/duckdb/flows.sql is.
CREATE TABLE hive.rollcap.rollcap_flows (
    "row"         varchar,
    host          varchar,
    iface         varchar,
    "key"         varchar,
    linktype      integer,
    vlan          array(integer),
    ip            integer,
    proto         integer,
    src           varchar,
    dst           varchar,
    sport         integer,
    dport         integer,
    icmp_type     integer,
    icmp_code     integer,
    first_ns      bigint,
    last_ns       bigint,
    packets       bigint,
    bytes         bigint,
    community_id  varchar,
    complete      boolean,
    flows         bigint,
    non_ip        bigint,
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
    external_location = 's3://my-bucket/caps/_index/flows/v1/',
    partitioned_by = ARRAY['date', 'hour', 'minute'],
    partition_projection_enabled = true,
    partition_projection_location_template =
        's3://my-bucket/caps/_index/flows/v1/date=${date}/hour=${hour}/minute=${minute}/'
);
