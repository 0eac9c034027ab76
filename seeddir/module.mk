# seeddir/module.mk — build wiring for seeddir (see tests/module.mk for the macros)
#
# libseeddir: where the seed directory comes from (a file or etcd). The
# layout code (sd_layout.c) has no I/O; seedctl's blocking etcd client
# (sd_curl.c) uses libcurl and json-c. The daemons' source (sd_source.c:
# file or etcd, the loader thread, the local copy; sd_sync.c: the etcd sync
# engine; sd_http.c: libcurl multi on libev) also needs libev and libhc's
# /metrics text. Consumers link build/libseeddir.a before build/libhc.a and
# build/librouter.a, with $(SEEDDIR_LIBS) (+ $(EV_LIBS) for the source).
# Included before the daemons' modules: they use SEEDDIR_LIBS.

CURL_CFLAGS   := $(call pc_cflags,libcurl)
CURL_LIBS     := $(call pc_libs,libcurl,-lcurl)
JSONC_CFLAGS  := $(call pc_cflags,json-c)
JSONC_LIBS    := $(call pc_libs,json-c,-ljson-c)

SEEDDIR_SRCS  := $(sort $(wildcard seeddir/sd_*.c))
SEEDDIR_LIB   := $(B)/libseeddir.a
SEEDDIR_LIBS  := $(CURL_LIBS) $(JSONC_LIBS)

$(call objs_of,$(SEEDDIR_SRCS)): EXTRA_CFLAGS += $(CURL_CFLAGS) $(JSONC_CFLAGS) $(XXH_CFLAGS)
$(eval $(call static_lib,seeddir,$(SEEDDIR_SRCS)))

# (the source tests also need libev, the /metrics text of libhc, curl and json-c)
$(foreach t,$(basename $(notdir $(wildcard tests/unit/test_sd_*.c))),\
  $(eval $(call unit_test,$(t),$(SEEDDIR_LIB) $(B)/libhc.a $(B)/librouter.a,$(XXH_LIBS) $(SEEDDIR_LIBS) $(EV_LIBS) -lm)))

# Fuzz target: records (keys and values from the input) -> sd_build/sd_text.
ifneq ($(wildcard tests/fuzz/fuzz_sd_layout.c),)
$(eval $(call fuzz_target,sd_layout,$(SEEDDIR_LIB) $(B)/librouter.a,$(XXH_LIBS),seeddir/sd_layout.c $(sort $(wildcard router/router_*.c))))
endif

# Fuzz target: what the etcd sync engine reads from etcd (watch stream
# messages, range answers, base64).
ifneq ($(wildcard tests/fuzz/fuzz_sd_watch.c),)
$(eval $(call fuzz_target,sd_watch,$(SEEDDIR_LIB),$(SEEDDIR_LIBS) $(EV_LIBS) $(XXH_LIBS),seeddir/sd_sync.c seeddir/sd_http.c seeddir/sd_b64.c))
endif
