# healthcheck/module.mk — build wiring for healthcheck (see tests/module.mk for the macros)
#
#   build/libhc.a         the health feed (codec and client, route-agent links
#                         it), status table (seedctl health), check state
#                         machine, HTTP request/status code; and the plumbing
#                         both daemons share: the /metrics server (hc_metrics),
#                         the output queue (hc_buf; route-agent's map publisher too)
#                         (the seed directory source both daemons use is
#                         seeddir's libseeddir: sd_source.h)
#   build/healthcheckd    the checker daemon (librouter, libsgtls-$(TLS), c-ares, libev)
#   tests: build/tests/test_hc_*  (tests/unit/test_hc_*.c)
#   fuzz:  build/tests/fuzz-replay-hc_feed over tests/fuzz/corpus/hc_feed/

HC_LIB_SRCS := healthcheck/hc_feed_codec.c healthcheck/hc_line.c healthcheck/hc_feed_client.c \
               healthcheck/hc_status.c healthcheck/hc_state.c healthcheck/hc_http.c \
               healthcheck/hc_metrics.c healthcheck/hc_escape.c \
               healthcheck/hc_limits.c healthcheck/hc_sdnotify.c healthcheck/hc_procmetrics.c \
               healthcheck/hc_buf.c
HC_LIB      := $(B)/libhc.a

$(eval $(call static_lib,hc,$(HC_LIB_SRCS)))
# seedgate_build_info's version: the package's (debian/changelog, first line)
SEEDGATE_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
$(B)/obj/healthcheck/hc_procmetrics.o: EXTRA_CFLAGS += -DSEEDGATE_VERSION='"$(or $(SEEDGATE_VERSION),unknown)"'

HCD_SRCS := healthcheck/hc_main.c healthcheck/hc_target.c healthcheck/hc_probe.c \
            healthcheck/hc_dns.c healthcheck/hc_feed_server.c healthcheck/hc_haproxy.c \
            healthcheck/hc_stats.c healthcheck/hc_servers.c

$(call objs_of,$(HCD_SRCS)): EXTRA_CFLAGS += $(CARES_CFLAGS)
BINS += $(B)/healthcheckd
$(eval $(call program,$(B)/healthcheckd,$(HCD_SRCS),$(SEEDDIR_LIB) $(HC_LIB) $(B)/librouter.a $(TLS_LIB),\
	$(XXH_LIBS) $(CARES_LIBS) $(TLS_LDLIBS) $(SEEDDIR_LIBS) $(EV_LIBS)))

# Unit tests: one per concept, all linked with libhc (+ libev for the client,
# librouter for the reloader; a test takes only the objects it uses).
$(foreach t,$(basename $(notdir $(wildcard tests/unit/test_hc_*.c))),\
  $(eval $(call unit_test,$(t),$(HC_LIB) $(B)/librouter.a,$(EV_LIBS) $(XXH_LIBS))))

$(eval $(call fuzz_target,hc_feed,$(HC_LIB),,healthcheck/hc_feed_codec.c healthcheck/hc_line.c))
# healthcheckd's reading of "show servers state" (hc_servers.c, the client stubbed)
$(eval $(call fuzz_target,hc_servers,$(B)/obj/healthcheck/hc_servers.o $(B)/librouter.a,$(XXH_LIBS),\
	healthcheck/hc_servers.c $(ROUTER_SRCS)))
