# spoe-agents/route/module.mk — route-agent (included by spoe-agents/module.mk)
#
#   build/route-agent    the routing SPOE agent: libspop runtime + librouter,
#                        health from healthcheckd's feed through libhc.

ROUTE_AGENT_SRCS := $(sort $(wildcard spoe-agents/route/route_*.c))

BINS += $(B)/route-agent
$(eval $(call program,$(B)/route-agent,$(ROUTE_AGENT_SRCS),$(SPOP_LIB) $(B)/librouter.a $(B)/libhc.a,$(EV_LIBS) $(XXH_LIBS)))
