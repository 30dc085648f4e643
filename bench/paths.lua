-- wrk script for bench/cache_bench.pl: GET the paths listed in a file, one
-- after the other, each thread starting at a different place.
--
--   wrk -t2 -c50 -d5s -s bench/paths.lua http://127.0.0.1:PORT -- PATHFILE

local paths = {}
local i = 0

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    i = math.random(#paths)
end

function request()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
end
