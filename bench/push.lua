-- wrk script: POST NXCLOUD pushes, each with its own requestId, and a caller / DID that vary.
-- Usage: wrk ... -s bench/push.lua <url> -- <run tag> <token>
-- Every requestId is "<run tag>-<thread>-<n>", so a run's records are distinct on the topic.
-- done() prints one line "WRK_JSON {...}" that bench/load.py parses.

local threads = {}
local counter = 0
local tag = "run"
local token = "token"
local when = os.date("!%Y-%m-%d %H:%M:%S", os.time() + 8 * 3600) -- NXCLOUD's zone-less local time (+08:00)

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  tag = args[1] or tag
  token = args[2] or token
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.path = "/v1/nxcloud/binding-failures?token=" .. token
end

local fmt = '{"code":10013,"msg":"binding not exist","requestId":"%s-%d-%d","data":{"action":"queryAXB",'
  .. '"requestParams":{"caller":"852%08d","did":"8529%07d"},"occurrenceTime":"%s"}}'

function request()
  counter = counter + 1
  -- 1 push in 20 comes from a small pool of repeat callers; the others from distinct-ish numbers
  local tid = thread_id or 0 -- a global set by setup() in each thread's own Lua state
  local caller = counter % 20 == 0 and (counter % 97) or (tid * 10000000 + counter) % 100000000
  local body = string.format(fmt, tag, tid, counter, caller, counter % 1000003, when)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
      .. '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
