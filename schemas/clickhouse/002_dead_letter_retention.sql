-- min_server_version: 19.6
-- Rejected messages keep their original bytes, which may hold data nobody meant to send us:
-- keep them 90 days. TTL exists from ClickHouse 19.6; older servers skip this step and the
-- migration runs when the server is upgraded.
ALTER TABLE dead_letters MODIFY TTL rejected_at + toIntervalDay(90);
