-- wrk script for bench/soak: mixed traffic against the gateway.
--
--   wrk -t2 -c8 -d60s -s bench/soak.lua http://127.0.0.1:PORT -- \
--       OUTFILE CSRFILE...
--
-- Each request is one of: a sign (POST /sign, a CSR from the files given),
-- a status poll (GET /request/{id}) or a certificate (GET /request/{id}.pem)
-- of an id this thread was given.  Every location adds X-Soak-Loc, so an
-- answer is counted by handler, status and error reason.  done() writes
-- the counts and the ids handed out to OUTFILE, one "key value" per line.

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

-- globals: done() reads them from each thread with thread:get()
csrs = {}
ids = {}
counts = {}
accepted = {}
out_file = nil

local function bump(key)
    counts[key] = (counts[key] or 0) + 1
end

function init(args)
    out_file = args[1]
    for i = 2, #args do
        local f = assert(io.open(args[i], "rb"))
        table.insert(csrs, f:read("*a"))
        f:close()
    end
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
    local r = math.random()
    if #ids == 0 or r < 0.06 then
        local body = csrs[math.random(#csrs)]
        return wrk.format("POST", "/sign",
                          { ["Content-Type"] = "application/x-pem-file" },
                          body)
    end
    local id = ids[math.random(#ids)]
    if r < 0.55 then
        return wrk.format("GET", "/request/" .. id)
    end
    return wrk.format("GET", "/request/" .. id .. ".pem")
end

function response(status, headers, body)
    local loc = headers["X-Soak-Loc"] or "none"
    local reason = ""
    if status >= 400 then
        reason = body:match('"reason"%s*:%s*"([^"]*)"') or "-"
    end
    bump(loc .. " " .. status .. " " .. reason)
    if loc == "sign" and status == 200 then
        local id = body:match('"signRequestId"%s*:%s*"([%w%-]+)"')
        if id then
            table.insert(ids, id)
            table.insert(accepted, id)
        else
            bump("sign 200 without-id")
        end
    end
    if loc == "status" and status == 200 then
        local st = body:match('"status"%s*:%s*"(%u+)"')
        if st then bump("status-json " .. st) end
    end
    if loc == "status" and status == 200 and body:find("BEGIN CERTIFICATE") then
        bump("certificate 200")
    end
end

function done(summary, latency, requests)
    -- done() runs in the main Lua state: the threads' own state is read
    -- through thread:get()
    local f = assert(io.open(threads[1]:get("out_file"), "w"))
    local total = {}
    for _, t in ipairs(threads) do
        local c = t:get("counts")
        for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
        local acc = t:get("accepted")
        for _, id in ipairs(acc) do f:write("accepted ", id, "\n") end
    end
    for k, v in pairs(total) do f:write("count ", k, "\t", v, "\n") end
    f:write("requests ", summary.requests, "\n")
    f:write("duration_us ", summary.duration, "\n")
    f:write("errors_connect ", summary.errors.connect, "\n")
    f:write("errors_read ", summary.errors.read, "\n")
    f:write("errors_write ", summary.errors.write, "\n")
    f:write("errors_status ", summary.errors.status, "\n")
    f:write("errors_timeout ", summary.errors.timeout, "\n")
    f:write("latency_p50_us ", latency:percentile(50), "\n")
    f:write("latency_p99_us ", latency:percentile(99), "\n")
    f:write("latency_max_us ", latency.max, "\n")
    f:close()
end
