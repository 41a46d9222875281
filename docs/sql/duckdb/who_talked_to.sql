-- Every flow of the window matching `ip`, `port`, `proto` (params.sql), after
-- flows.sql: which host saw it, on which interface, in which capture; the
-- rows `rollcap flows --json` prints. Each capture has one summary, so no row
-- is counted twice.
SELECT host, iface, key, proto, src, sport, dst, dport, icmp_type, icmp_code, vlan,
       make_timestamp(first_ns // 1000) AS first_packet,  -- UTC
       make_timestamp(last_ns // 1000) AS last_packet,
       first_ns, last_ns, packets, bytes, community_id
FROM matching
ORDER BY host, first_ns, key, src, dst, sport, dport;
