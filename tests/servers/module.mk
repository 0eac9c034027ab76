# tests/servers/module.mk — small servers the demo, tests and benchmarks run
# (included by tests/module.mk; see there for the macros)
#
#   build/tools/demo-server   hub/node stand-in: X-Served-By, keep-alive,
#                             pipelining, websocket echo, failure modes

TOOLS += $(B)/tools/demo-server
$(eval $(call program,$(B)/tools/demo-server,tests/servers/demo-server.c,,$(EV_LIBS) $(SSL_LIBS)))
