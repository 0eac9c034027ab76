-- bench/wrk/auth.lua — requests carrying access tokens (bench/bench-auth.sh).
-- SG_BENCH_REQS names a file of "PATH<TAB>TOKEN" lines; each becomes one
-- request with the token in the sg_token cookie, formatted once in init so
-- that wrk spends no time per request building them. wrk rotates through
-- the lines: over a keep-alive connection consecutive requests name other
-- projects and, when the file says so, other users and tokens.
local reqs = {}
local n, i = 0, 0

function init(args)
	local path = os.getenv("SG_BENCH_REQS") or error("SG_BENCH_REQS not set")
	for line in io.lines(path) do
		local p, tok = line:match("^(%S+)\t(%S+)$")
		if p then
			n = n + 1
			reqs[n] = wrk.format("GET", p, { ["Cookie"] = "sg_token=" .. tok })
		end
	end
	if n == 0 then error(path .. ": no requests") end
	-- each wrk thread starts at its own offset
	i = math.random(n) - 1
end

function request()
	i = i % n + 1
	return reqs[i]
end
