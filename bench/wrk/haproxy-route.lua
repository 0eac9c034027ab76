-- bench/wrk/haproxy-route.lua — loaded INTO HAProxy (lua-load, with
-- SG_ROUTE_LUA=1) for the benchmark's comparison: the routing decision of a
-- Lua table held by HAProxy, for the same project ids and the same
-- placement as the route agent (the table is generated from
-- `seedctl where`; SG_LUA_TABLE names a Lua file returning
-- { ["<uuid>"] = { "<backend>", "<server>" }, ... }).
-- Not a product feature: no health, no reload, no failover.
local table_file = os.getenv("SG_LUA_TABLE") or error("SG_LUA_TABLE not set")
local routes = dofile(table_file)

core.register_action("sg_route", { "http-req" }, function(txn)
	local path = txn.sf:path()
	local r = routes[string.sub(path, 2, 37)]
	if r then
		txn:set_var("txn.route.backend", r[1])
		txn:set_var("txn.route.server", r[2])
	end
end)
