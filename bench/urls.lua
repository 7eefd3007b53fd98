-- wrk script: send the request paths of the file $BENCH_PATHS, one per line, and print one
-- JSON line of results at the end.
-- Each of wrk's $BENCH_THREADS threads takes every T-th line from its own offset, so no
-- path is sent twice until the list runs out (then it wraps, and "wrapped" says so: a
-- cold run that wraps is no longer cold). $BENCH_HEADER ("Name: value") is added to every
-- request, for If-None-Match runs.
local threads = {}

local function load_paths()
  local paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  return paths
end

function setup(thread)
  thread:set("offset", #threads)
  threads[#threads + 1] = thread
end

local paths, index, step, headers
function init(args)
  paths = load_paths()
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  index = offset - step
  headers = {}
  local header = os.getenv("BENCH_HEADER")
  if header and header ~= "" then
    local name, value = header:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
end

function request()
  index = (index + step) % #paths
  return wrk.format("GET", paths[index + 1], headers)
end

function done(summary, latency, requests)
  local count = #load_paths()
  local e = summary.errors
  local function ms(p) return latency:percentile(p) / 1000 end
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"bytes":%d,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.1f,' ..
    '"errors":%d,"non_2xx_3xx":%d,"paths":%d,"wrapped":%s}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, ms(50), ms(99),
    latency.max / 1000, e.connect + e.read + e.write + e.timeout, e.status, count,
    tostring(summary.requests > count)))
end
