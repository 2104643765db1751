-- wrk script: POST one real image per request as multipart/form-data, cycling through a list.
-- Usage: wrk ... -s bench/post.lua URL -- LIST_FILE [FIELD]
-- LIST_FILE holds one image path per line. done() prints one "BENCH_JSON {...}" line.

local boundary = "----deepfake-bench-5f1c2a9e"
local bodies = {}
local count = 0
local index = 0
local threads_started = 0

local function multipart(field, filename, data)
  return "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. filename .. '"\r\n'
    .. "Content-Type: image/jpeg\r\n\r\n"
    .. data .. "\r\n--" .. boundary .. "--\r\n"
end

function setup(thread)
  -- each wrk thread starts at a different place in the list
  thread:set("start", threads_started * 17)
  threads_started = threads_started + 1
end

function init(args)
  local list, field = args[1], args[2] or "file"
  for path in io.lines(list) do
    local fh = assert(io.open(path, "rb"))
    local data = fh:read("*a")
    fh:close()
    count = count + 1
    -- a unique filename per image: the seed-style baseline saves uploads under it
    bodies[count] = multipart(field, string.format("%03d_%s", count, path:match("([^/]+)$")), data)
  end
  assert(count > 0, "no images in " .. list)
  index = (start or 0) % count
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

function request()
  index = index % count + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "min_us": %d, "mean_us": %.1f, "p50_us": %d, '
      .. '"p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
