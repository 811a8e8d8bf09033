-- wrk script of `npm run bench` (bench/load.ts runs it with -t1): POSTs to the recipient and
-- checkout routes alternately, request i carrying the JWT of line i (cycling) of $BENCH_WRK_JWTS.
-- With $BENCH_WRK_AMOUNT, sends that many requests only and prints BENCH_WRK_REACHED once they
-- are all answered (wrk itself only knows durations: the runner then stops it with SIGINT).

local paths = { '/v1/tokens/recipients', '/v1/tokens/checkout' }
local amount = tonumber(os.getenv('BENCH_WRK_AMOUNT') or '')
local jwts = {}
local host
local sent = 0
local checked = false
-- Whole requests, built once per slot of the cycle, while the cycle is short enough to keep.
local built = {}
local period = 0
local keep = false
local threads = {}
-- Globals, so that done() can read them from the thread's state with thread:get().
answered = 0
ok = 0

function setup (thread)
  threads[#threads + 1] = thread
end

function init ()
  local file = os.getenv('BENCH_WRK_JWTS')
  for line in io.lines(file) do
    if line ~= '' then jwts[#jwts + 1] = line end
  end
  if #jwts == 0 then error('no JWTs in ' .. tostring(file)) end
  host = wrk.headers['Host']
  -- Slot i and i + period carry the same path and JWT.
  period = #jwts % 2 == 0 and #jwts or 2 * #jwts
  keep = period <= 50000
end

local function build (i)
  return 'POST ' .. paths[i % 2 + 1] .. ' HTTP/1.1\r\nHost: ' .. host ..
    '\r\nAuthorization: Bearer ' .. jwts[i % #jwts + 1] .. '\r\n\r\n'
end

function request ()
  -- wrk asks for one request before the run, to check it parses; that one is never sent.
  if not checked then
    checked = true
    return build(0)
  end
  -- Nothing to send: the connection writes no bytes and stays idle.
  if amount and sent >= amount then return '' end
  local slot = sent % period
  sent = sent + 1
  if not keep then return build(slot) end
  local req = built[slot]
  if req == nil then
    req = build(slot)
    built[slot] = req
  end
  return req
end

-- Only with an amount: a response() hook makes wrk hand every answer's headers to Lua.
if amount then
  function response (status)
    answered = answered + 1
    if status >= 200 and status < 300 then ok = ok + 1 end
    if answered == amount then
      wrk.thread:stop()
      io.write('BENCH_WRK_REACHED\n')
      io.flush()
    end
  end
end

-- wrk's own CPU time (user + system, all threads) in clock ticks, from /proc/self/stat.
local function cpu_ticks ()
  local f = io.open('/proc/self/stat', 'r')
  if f == nil then return -1 end
  local stat = f:read('*a')
  f:close()
  local fields = {}
  -- Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
  for field in stat:match('%) (.*)$'):gmatch('%S+') do fields[#fields + 1] = field end
  return tonumber(fields[12]) + tonumber(fields[13])
end

function done (summary, latency)
  local e = summary.errors
  local counted = amount ~= nil and threads[1] ~= nil
  io.write(string.format(
    'BENCH_WRK {"durationUs":%d,"requests":%d,"answered":%s,"ok":%s,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d,"cpuTicks":%d}\n',
    summary.duration, summary.requests,
    counted and string.format('%d', threads[1]:get('answered')) or 'null',
    counted and string.format('%d', threads[1]:get('ok')) or 'null',
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), cpu_ticks()))
  io.flush()
end
