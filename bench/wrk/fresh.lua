-- bench/wrk/fresh.lua — every request asks for a project never seen before
-- (a random version-4 UUID per request): every map-cache lookup misses and
-- the agent is asked, the map cache's worst case.
local fmt, rnd = string.format, math.random

function init(args)
	math.randomseed(os.time() * 1000 + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 1000)
end

function request()
	return wrk.format("GET", fmt("/%08x-%04x-4%03x-%04x-%06x%06x/files/a.txt", rnd(0, 0x7fffffff),
		rnd(0, 0xffff), rnd(0, 0xfff), 0x8000 + rnd(0, 0x3fff), rnd(0, 0xffffff), rnd(0, 0xffffff)))
end
