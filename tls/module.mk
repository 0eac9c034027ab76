# tls/module.mk — the TLS client library, both back ends always built.
#
#   build/libsgtls-openssl.a   tls.h on OpenSSL 3 (default)
#   build/libsgtls-wolfssl.a   tls.h on wolfSSL 5.5, native API
#
# TLS=openssl|wolfssl picks which one the daemons link: they add
# $(TLS_LIB) to their prerequisites and $(TLS_LDLIBS) to their libraries.
# The back-end independent objects (status text, libev connect helper) go
# into both archives. Unit tests: build/tests/test_tls_openssl and
# build/tests/test_tls_wolfssl, one source (tests/unit/test_tls_client.c).

TLS_COMMON_SRCS := tls/tls_common.c tls/tls_connect.c

TLS_LIBS_openssl := $(SSL_LIBS)
TLS_LIBS_wolfssl := $(WOLF_LIBS)
ifeq ($(filter $(TLS),openssl wolfssl),)
$(error TLS must be openssl or wolfssl, not '$(TLS)')
endif

TLS_LIB    := $(B)/libsgtls-$(TLS).a
TLS_LDLIBS := $(TLS_LIBS_$(TLS)) $(EV_LIBS)

$(eval $(call static_lib,sgtls-openssl,$(TLS_COMMON_SRCS) tls/tls_openssl.c))
$(eval $(call static_lib,sgtls-wolfssl,$(TLS_COMMON_SRCS) tls/tls_wolfssl.c))
$(B)/obj/tls/tls_openssl.o: EXTRA_CFLAGS += $(SSL_CFLAGS)
$(B)/obj/tls/tls_wolfssl.o: EXTRA_CFLAGS += $(WOLF_CFLAGS)

TLS_ARCHIVES := $(B)/libsgtls-openssl.a $(B)/libsgtls-wolfssl.a

# The unit test source is compiled once; each binary links one back end.
# Both link OpenSSL too: the test's own servers and certificates use it.
ifneq ($(wildcard tests/unit/test_tls_client.c),)
TLS_TEST_OBJ := $(B)/obj/tests/unit/test_tls_client.o
ALL_OBJS     += $(TLS_TEST_OBJ)
UNIT_TESTS   += $(B)/tests/test_tls_openssl $(B)/tests/test_tls_wolfssl
$(TLS_TEST_OBJ): EXTRA_CFLAGS += $(CMOCKA_CFLAGS) $(SSL_CFLAGS)
$(B)/tests/test_tls_%: $(TLS_TEST_OBJ) $(B)/libsgtls-%.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(TLS_LIBS_$*) $(SSL_LIBS) $(EV_LIBS) $(CMOCKA_LIBS)
endif

tls: $(TLS_ARCHIVES) $(filter $(B)/tests/test_tls_%,$(UNIT_TESTS)) ## build the TLS library (both back ends) and its tests
.PHONY: tls

# libsg-hitch.so: an LD_PRELOAD library for hitch (tls/hitch_preload.c):
# ticket keys, which hitch has no setting for, and one listener shared by
# its workers so a reload resets nothing; tls/hitch-run.sh loads it. Built
# without the sanitizers: it is loaded into hitch, not into our binaries.
HITCH_SO := $(B)/libsg-hitch.so
TOOLS += $(HITCH_SO)
$(HITCH_SO): tls/hitch_preload.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(SSL_CFLAGS) -std=c11 $(OPT) $(WARN) -fPIC -shared -o $@ $< $(SSL_LIBS) -ldl
