-- wrk script: POST unique, pre-signed JSMS callbacks, then drain, then report counts as JSON.
--
--   wrk -t2 -c32 -d17s -s callbacks.lua URL -- BODIES PER_THREAD LOAD_SECONDS
--
-- BODIES holds one form-encoded signed callback per line (made by bench.py; wrk's LuaJIT has no
-- sha1). Thread i sends lines [i*PER_THREAD, (i+1)*PER_THREAD), each once, so every request is
-- unique and "rows stored == 2xx answers" is a real check. After LOAD_SECONDS (or when its lines
-- run out; LOAD_SECONDS=0 means only then) a thread sends no more callbacks: it asks GET /healthz
-- until every callback it sent has been answered, then stops. So no callback is in flight when
-- wrk closes its sockets, and nothing is stored that the count does not know about.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path, per_thread, load_seconds = args[1], tonumber(args[2]), tonumber(args[3])
  bodies = {}
  local first, last = id * per_thread + 1, (id + 1) * per_thread
  local line_number = 0
  for line in io.lines(path) do
    line_number = line_number + 1
    if line_number > last then break end
    if line_number >= first then bodies[#bodies + 1] = line end
  end
  load_until = load_seconds > 0 and load_seconds or math.huge
  post_headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  drain_request = wrk.format("GET", "/healthz")
  -- Counters this thread hands to done() through thread:get.
  next_body, sent, answered, ok, not_ok, stored_sum, drained = 1, 0, 0, 0, 0, 0, 0
  exhausted, statuses = 0, ""
  status_counts = {}
  started, load_ended = nil, nil
  -- wrk calls request() once on thread 0 right after init, only to check that it parses
  -- (script_verify_request); that one is never sent, so it must not use up a body.
  verifying = (id == 0)
end

function request()
  if verifying then
    verifying = false
    return drain_request
  end
  local t = now()
  started = started or t
  if not load_ended and (next_body > #bodies or t - started >= load_until) then
    load_ended = t
    exhausted = next_body > #bodies and 1 or 0
  end
  if load_ended then return drain_request end
  local body = bodies[next_body]
  next_body = next_body + 1
  sent = sent + 1
  return wrk.format("POST", wrk.path, post_headers, body)
end

function response(status, headers, body)
  if body:find('"stored"', 1, true) then
    answered = answered + 1
    if status >= 200 and status < 300 then
      ok = ok + 1
      stored_sum = stored_sum + tonumber(body:match('"stored"%s*:%s*(%d+)') or 0)
    else
      not_ok = not_ok + 1
    end
  elseif status == 200 and body:find('"status"', 1, true) then
    drained = drained + 1
  else
    -- An error answer: to a callback (the drain probe does not fail on a live server).
    answered = answered + 1
    not_ok = not_ok + 1
    status_counts[status] = (status_counts[status] or 0) + 1
    local parts = {}
    for code, count in pairs(status_counts) do parts[#parts + 1] = code .. ":" .. count end
    statuses = table.concat(parts, ",")
  end
  if load_ended and answered >= sent then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local t = { sent = 0, answered = 0, ok = 0, not_ok = 0, stored_sum = 0, drained = 0,
              exhausted = 0, rate = 0, load_seconds = 0 }
  local statuses = {}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(t) do
      if key ~= "rate" and key ~= "load_seconds" then t[key] = t[key] + (thread:get(key) or 0) end
    end
    local s, e = thread:get("started"), thread:get("load_ended")
    if s and e and e > s then
      t.rate = t.rate + (thread:get("answered") or 0) / (e - s)
      t.load_seconds = math.max(t.load_seconds, e - s)
    end
    local st = thread:get("statuses")
    if st and st ~= "" then statuses[#statuses + 1] = st end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"sent":%d,"answered":%d,"ok":%d,"not_ok":%d,"stored_sum":%d,"drained":%d,' ..
    '"exhausted":%d,"rate":%.1f,"load_seconds":%.3f,"statuses":"%s",' ..
    '"wrk_requests":%d,"wrk_duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f}\n',
    t.sent, t.answered, t.ok, t.not_ok, t.stored_sum, t.drained, t.exhausted, t.rate,
    t.load_seconds, table.concat(statuses, ","), summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
