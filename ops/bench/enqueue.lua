-- wrk script: POST /jobs enqueueing a noop job, as bot "bench".
-- Used by ops/bench/bridge-enqueue.sh.
wrk.method = "POST"
wrk.body = '{"type":"noop"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Bot-Id"] = "bench"
local key = os.getenv("BRIDGE_API_KEY")
if key and key ~= "" then wrk.headers["X-API-Key"] = key end

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  io.write(string.format("throughput %.0f req/s\n", summary.requests / (summary.duration / 1e6)))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%s %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
