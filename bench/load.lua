-- wrk script: every request comes from the next signed-in bench user of its thread, round robin.
-- Arguments after the URL: mode ("toggle" or "bare"), path, policy version, users file, threads,
-- and the user each thread starts after: the requests a thread made, on average, in the earlier
-- rounds of this mode.
-- The users file has one "session-key csrf-token first-value" line per user; in toggle mode each
-- user's value flips on every request, so every POST is a real change, never a no-op.
-- Run with as many threads as connections: a thread then has one request out at a time, so each
-- response belongs to the user of the request before it. Thread n takes users n, n + threads, ...

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode, path, version = args[1], args[2], args[3]
  users, current, not_200 = {}, nil, 0
  local index = 0
  for line in io.lines(args[4]) do
    local session, csrf, value = line:match("(%S+) (%S+) (%S+)")
    if index % tonumber(args[5]) == id then
      table.insert(users, { cookie = "sessionid=" .. session .. "; csrftoken=" .. csrf,
                            csrf = csrf, value = value })
    end
    index = index + 1
  end
  assert(#users > 0, "fewer users than connections")
  turn = tonumber(args[6]) % #users
end

function request()
  turn = turn % #users + 1
  current = users[turn]
  if mode == "bare" then
    return wrk.format("GET", path, { Cookie = current.cookie })
  end
  local body = "policy_version=" .. version .. "&allowed=off&allowed=" .. current.value
  current.value = (current.value == "on") and "off" or "on"
  return wrk.format("POST", path, {
    Cookie = current.cookie,
    ["X-CSRFToken"] = current.csrf,
    ["HX-Request"] = "true",
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, body)
end

function response(status, headers, body)
  if status ~= 200 then not_200 = not_200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("not_200") end
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "not_200": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
    errors.connect + errors.read + errors.write + errors.timeout))
end
