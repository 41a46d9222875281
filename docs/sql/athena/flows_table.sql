-- rollcap's flow summaries (docs/flows.md) as an Athena table (engine v3),
-- partitions by projection, like athena/manifest_table.sql. One table holds
-- both kinds of line: "row" = 'flow' (one per flow) and 'capture' (one per
-- summary). Replace my-bucket/caps in both places.
-- Not run by rollcap's tests (no Athena here); docs/sql/duckdb/flows.sql is.
CREATE EXTERNAL TABLE rollcap_flows (
    `row`         string,   -- 'flow' or 'capture'
    host          string,
    iface         string,
    `key`         string,   -- the capture's object key
    linktype      int,
    vlan          array<int>,
    ip            int,      -- 4 or 6
    proto         int,
    src           string,   -- sent the flow's first packet in the capture
    dst           string,
    sport         int,
    dport         int,
    icmp_type     int,
    icmp_code     int,
    first_ns      bigint,   -- epoch ns, UTC
    last_ns       bigint,
    packets       bigint,
    bytes         bigint,
    community_id  string,
    complete      boolean,  -- capture rows: every IP packet is in a flow row
    flows         bigint,   -- capture rows
    non_ip        bigint    -- capture rows
)
PARTITIONED BY (`date` string, `hour` string, `minute` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://my-bucket/caps/_index/flows/v1/'
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
        's3://my-bucket/caps/_index/flows/v1/date=${date}/hour=${hour}/minute=${minute}/'
);
