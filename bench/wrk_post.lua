-- wrk script for the /echo/ endpoint: every request is a POST with a 64 KiB body.
-- The size must match ECHO_BODY_SIZE in throughput.py.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
