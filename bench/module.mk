# bench/module.mk — build wiring for bench (see tests/module.mk for the macros)
#
#   build/tools/spop-load   SPOP load generator playing HAProxy's side
#                           (bench/bench-spop.sh drives it against the agents)

TOOLS += $(B)/tools/spop-load
$(eval $(call program,$(B)/tools/spop-load,bench/spop-load.c,$(B)/libspop.a,))
