# spoe-agents/module.mk — build wiring for spoe-agents (see tests/module.mk for the macros)
#
#   build/libspop.a                 SPOP codec + agent runtime (spoe-agents/lib)
#   build/tools/spop-echo-agent     tiny agent used by the integration tests
#   build/tests/test_spop_*         codec and runtime unit tests
#   fuzz target spop_frame          frame/HELLO/NOTIFY decoders + connection state machine

SPOP_SRCS := $(sort $(wildcard spoe-agents/lib/*.c))
SPOP_LIB  := $(B)/libspop.a
SPOP_LIBS := $(EV_LIBS)

$(eval $(call static_lib,spop,$(SPOP_SRCS)))

ifneq ($(wildcard spoe-agents/echo/*.c),)
TOOLS += $(B)/tools/spop-echo-agent
$(eval $(call program,$(B)/tools/spop-echo-agent,$(sort $(wildcard spoe-agents/echo/*.c)),$(SPOP_LIB),$(SPOP_LIBS)))
endif

$(foreach t,$(basename $(notdir $(wildcard tests/unit/test_spop_*.c))),\
  $(eval $(call unit_test,$(t),$(SPOP_LIB),$(SPOP_LIBS))))

ifneq ($(wildcard tests/fuzz/fuzz_spop_frame.c),)
$(eval $(call fuzz_target,spop_frame,$(SPOP_LIB),$(SPOP_LIBS),$(SPOP_SRCS)))
endif

-include spoe-agents/route/module.mk
