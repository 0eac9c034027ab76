-- bench/wrk/repeat.lua — every request of every connection asks for the
-- same project (the first id of SG_BENCH_IDS): the decision cache hits
-- after each connection's first request. The request is static, so wrk
-- takes its fast path (no Lua call per request).
function init(args)
	local path = os.getenv("SG_BENCH_IDS") or error("SG_BENCH_IDS not set")
	local id = io.lines(path)()
	wrk.path = "/" .. id .. "/files/a.txt"
end
