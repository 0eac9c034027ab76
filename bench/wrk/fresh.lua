-- bench/wrk/fresh.lua — every request asks for a project never seen before
-- (a random version-4 UUID per request): every map-cache lookup misses and
-- the agent is asked, the map cache's worst case.
local fmt, rnd = string.format, math.random

-- Seeded from /dev/urandom: two runs started within the same second must
-- not ask for the same "never-seen" projects.
function init(args)
	local f = assert(io.open("/dev/urandom", "rb"))
	local b = f:read(4)
	f:close()
	math.randomseed(((b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)) * 256 + b:byte(4))
end

function request()
	return wrk.format("GET", fmt("/%08x-%04x-4%03x-%04x-%06x%06x/files/a.txt", rnd(0, 0x7fffffff),
		rnd(0, 0xffff), rnd(0, 0xfff), 0x8000 + rnd(0, 0x3fff), rnd(0, 0xffffff), rnd(0, 0xffffff)))
end
