# healthcheck/module.mk — build wiring for healthcheck (see tests/module.mk for the macros)
#
#   build/libhc.a         health feed codec + client, status table, check state
#                         machine, HTTP status parser (route-agent links it)
#   build/healthcheckd    the checker daemon
#   tests: test_hc_feed, test_hc_state, test_hc_http; fuzz: hc_feed

HC_LIB_SRCS := healthcheck/hc_feed_codec.c healthcheck/hc_line.c healthcheck/hc_feed_client.c

$(eval $(call static_lib,hc,$(HC_LIB_SRCS)))

$(eval $(call fuzz_target,hc_feed,$(B)/libhc.a,,healthcheck/hc_feed_codec.c healthcheck/hc_line.c))
