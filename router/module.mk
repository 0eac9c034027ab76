# router/module.mk — build wiring for router (see tests/module.mk for the macros)
#
# librouter: the seed directory (parser, immutable snapshot, holder),
# placement (per-datacenter consistent-hash rings) and the routing decision.
# No I/O besides reading the seed file. Consumers link build/librouter.a
# with $(XXH_LIBS) and -pthread.

ROUTER_SRCS  := $(sort $(wildcard router/router_*.c))
ROUTER_LIB   := $(B)/librouter.a
ROUTER_LIBS  := $(XXH_LIBS)

$(call objs_of,$(ROUTER_SRCS)): EXTRA_CFLAGS += $(XXH_CFLAGS)
$(eval $(call static_lib,router,$(ROUTER_SRCS)))

# seedctl: check / where / stats / haproxy / health, and the etcd commands
# (import / export / put / del / drain / register).
# One file per subcommand: router/seedctl_<cmd>.c, the table in seedctl.c.
SEEDCTL_SRCS := $(sort $(wildcard router/seedctl*.c))
ifneq ($(SEEDCTL_SRCS),)
BINS  += $(B)/seedctl
# seedctl health prints healthcheckd's table with libhc (no libev needed).
# The etcd commands use libseeddir's blocking client (libcurl, json-c).
$(call objs_of,$(SEEDCTL_SRCS)): EXTRA_CFLAGS += $(CURL_CFLAGS) $(JSONC_CFLAGS)
$(eval $(call program,$(B)/seedctl,$(SEEDCTL_SRCS),$(B)/libseeddir.a $(SGJWT_LIB) $(ROUTER_LIB) $(B)/libhc.a,$(ROUTER_LIBS) $(SEEDDIR_LIBS) $(SGJWT_LIBS)))
endif

# Unit tests, one per concept.
$(foreach t,$(basename $(notdir $(wildcard tests/unit/test_router_*.c))),\
  $(eval $(call unit_test,$(t),$(ROUTER_LIB),$(ROUTER_LIBS) -lm)))

# Fuzz target: the parser, then placement/decision on what parsed.
ifneq ($(wildcard tests/fuzz/fuzz_seed_parse.c),)
$(eval $(call fuzz_target,seed_parse,$(ROUTER_LIB),$(ROUTER_LIBS),$(ROUTER_SRCS)))
endif

# Microbenchmark (make bench runs bench/bench-router.sh).
ifneq ($(wildcard bench/router-bench.c),)
TOOLS += $(B)/tools/router-bench
$(eval $(call program,$(B)/tools/router-bench,bench/router-bench.c,$(ROUTER_LIB),$(ROUTER_LIBS)))
endif
