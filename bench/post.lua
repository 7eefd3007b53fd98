-- wrk script: POST one request body, made different on every request, and print one JSON
-- line of results at the end (the fields of urls.lua).
-- The body is $BENCH_PREFIX's bytes .. a 16-digit counter .. $BENCH_SUFFIX's bytes (files
-- Python wrote); bench/processing.py places the counter inside a JPEG COM segment, so each
-- request is a distinct image for the same work. The counter is $BENCH_RUN (6 digits,
-- unique per run), the thread's number (2) and the thread's request number (8): distinct
-- across threads and runs. With $BENCH_SUFFIX unset, the prefix is the whole body, the same
-- every time (the repeated-request runs). $BENCH_HEADERS holds "Name: value" lines.
local threads = {}

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

local head, prefix, suffix, run, n
function init(args)
  prefix = slurp(os.getenv("BENCH_PREFIX"))
  local suffix_path = os.getenv("BENCH_SUFFIX")
  suffix = (suffix_path and suffix_path ~= "") and slurp(suffix_path) or nil
  run = os.getenv("BENCH_RUN") or "000000"
  n = 0
  local length = #prefix + (suffix and (16 + #suffix) or 0)
  local lines = { "POST " .. os.getenv("BENCH_PATH") .. " HTTP/1.1",
                  "Host: " .. os.getenv("BENCH_HOST"),
                  "Content-Length: " .. length }
  for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  -- The head and a fixed body are joined once; a varying body costs one concatenation.
  head = table.concat(lines, "\r\n") .. "\r\n\r\n"
  if not suffix then head = head .. prefix end
end

function request()
  if not suffix then return head end
  n = n + 1
  return head .. prefix .. string.format("%s%02d%08d", run, id, n) .. suffix
end

function done(summary, latency, requests)
  local e = summary.errors
  local function ms(p) return latency:percentile(p) / 1000 end
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"bytes":%d,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.1f,' ..
    '"errors":%d,"non_2xx_3xx":%d,"paths":1,"wrapped":false}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, ms(50), ms(99),
    latency.max / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
