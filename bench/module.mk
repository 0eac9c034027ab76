# bench/module.mk — build wiring for bench (see tests/module.mk for the macros)
#
#   build/tools/spop-load   SPOP load generator playing HAProxy's side
#                           (bench/bench-spop.sh drives it against the agents)

SPOP_LOAD_SRCS := bench/spop-load.c bench/load_hist.c bench/load_pool.c
TOOLS += $(B)/tools/spop-load
$(eval $(call program,$(B)/tools/spop-load,$(SPOP_LOAD_SRCS),$(B)/libspop.a,))
