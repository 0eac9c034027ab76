# auth/module.mk — libsgjwt: project access tokens (ES256 JWT) with OpenSSL
# and json-c (see tests/module.mk for the macros).
#
#   build/libsgjwt.a   key files, verification, base64url, raw<->DER
#                      signatures. Used by route-agent (the check) and
#                      seedctl token (minting). Consumers link it before
#                      build/librouter.a (project ids) with $(SGJWT_LIBS).
#   fuzz target jwt    the verifier and the claims parser on any bytes

SGJWT_SRCS := $(sort $(wildcard auth/sg_*.c))
SGJWT_LIB  := $(B)/libsgjwt.a
SGJWT_LIBS := $(SSL_LIBS) $(call pc_libs,json-c,-ljson-c)

$(call objs_of,$(SGJWT_SRCS)): EXTRA_CFLAGS += $(SSL_CFLAGS) $(call pc_cflags,json-c)
$(eval $(call static_lib,sgjwt,$(SGJWT_SRCS)))

ifneq ($(wildcard tests/fuzz/fuzz_jwt.c),)
$(eval $(call fuzz_target,jwt,$(SGJWT_LIB) $(B)/librouter.a,$(SGJWT_LIBS) $(XXH_LIBS),$(SGJWT_SRCS) $(sort $(wildcard router/router_*.c))))
endif

# Unit test: outcomes on the fuzz corpus's tokens, claims, base64url, DER,
# key file errors.
$(foreach t,$(basename $(notdir $(wildcard tests/unit/test_sg_jwt*.c))),\
  $(eval $(call unit_test,$(t),$(SGJWT_LIB) $(B)/librouter.a,$(SGJWT_LIBS) $(XXH_LIBS))))
