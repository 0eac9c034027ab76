# spoe-agents/route/module.mk — route-agent (included by spoe-agents/module.mk)
#
#   build/route-agent    the routing SPOE agent: libspop runtime + librouter,
#                        health from healthcheckd's feed through libhc, the
#                        seed directory (file or etcd) through libseeddir.

ROUTE_AGENT_SRCS := $(sort $(wildcard spoe-agents/route/route_*.c))

BINS += $(B)/route-agent
$(eval $(call program,$(B)/route-agent,$(ROUTE_AGENT_SRCS),$(SPOP_LIB) $(SEEDDIR_LIB) $(SGJWT_LIB) $(B)/libhc.a $(B)/librouter.a,$(SEEDDIR_LIBS) $(SGJWT_LIBS) $(EV_LIBS) $(XXH_LIBS)))

# Unit tests of the agent's own pieces (health table, views and holder).
ROUTE_VIEW_OBJS := $(call objs_of,spoe-agents/route/route_view.c spoe-agents/route/route_health.c)
$(eval $(call unit_test,test_route_view,$(ROUTE_VIEW_OBJS) $(B)/librouter.a,$(XXH_LIBS)))
