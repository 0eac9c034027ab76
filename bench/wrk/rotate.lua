-- bench/wrk/rotate.lua — every request asks for another project.
-- The ids come from the file named by SG_BENCH_IDS (one UUID a line), the
-- same ids the Lua routing table and the agent's placement know. Requests
-- are formatted once, in init, so that wrk spends no time per request on
-- building them; consecutive requests (and so consecutive requests of one
-- connection) carry different project ids: the decision cache misses.
local reqs = {}
local n, i = 0, 0

function init(args)
	local path = os.getenv("SG_BENCH_IDS") or error("SG_BENCH_IDS not set")
	for id in io.lines(path) do
		n = n + 1
		reqs[n] = wrk.format("GET", "/" .. id .. "/files/a.txt")
	end
	if n == 0 then error(path .. ": no ids") end
end

function request()
	i = i % n + 1
	return reqs[i]
end
