# tests/module.mk — shared rules for unit tests and fuzz targets.
#
# Modules declare their tests with the macros below, from their own
# module.mk, so that each component keeps its test wiring next to its code.

# $(call unit_test,NAME,PREREQS,LDLIBS)
#   tests/unit/NAME.c -> $(B)/tests/NAME, linked with PREREQS (objects or
#   static libraries) and LDLIBS, plus cmocka.
define unit_test
UNIT_TESTS += $(B)/tests/$(1)
ALL_OBJS   += $(B)/obj/tests/unit/$(1).o
$(B)/obj/tests/unit/$(1).o: EXTRA_CFLAGS += $(CMOCKA_CFLAGS)
$(B)/tests/$(1): $(B)/obj/tests/unit/$(1).o $(2)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $(3) $$(CMOCKA_LIBS)
endef

# $(call fuzz_target,NAME,PREREQS,LDLIBS,SOURCES)
#   tests/fuzz/fuzz_NAME.c holds LLVMFuzzerTestOneInput. It is linked twice:
#   with gcc and tests/fuzz/replay_main.c into $(B)/tests/fuzz-replay-NAME,
#   which `make test` runs over tests/fuzz/corpus/NAME/; and by `make fuzz`
#   with clang's libFuzzer from SOURCES into build/fuzz/fuzz-NAME.
define fuzz_target
FUZZ_NAMES   += $(1)
FUZZ_REPLAYS += $(B)/tests/fuzz-replay-$(1)
ALL_OBJS     += $(B)/obj/tests/fuzz/fuzz_$(1).o
FUZZ_SRCS_$(1) := $(4)
FUZZ_LIBS_$(1) := $(3)
$(B)/tests/fuzz-replay-$(1): $(B)/obj/tests/fuzz/fuzz_$(1).o $(B)/obj/tests/fuzz/replay_main.o $(2)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $(3)
endef

# $(call static_lib,NAME,SOURCES) -> $(B)/libNAME.a
define static_lib
ALL_OBJS += $(call objs_of,$(2))
$(B)/lib$(1).a: $(call objs_of,$(2))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef

# $(call program,PATH,SOURCES,PREREQS,LDLIBS) -> PATH (add it to BINS or TOOLS)
define program
ALL_OBJS += $(call objs_of,$(2))
$(1): $(call objs_of,$(2)) $(3)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $(4)
endef

ALL_OBJS += $(B)/obj/tests/fuzz/replay_main.o

FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -I. -Ispoe-agents/lib -Irouter -Itls -Ihealthcheck

fuzz: ## build libFuzzer targets with clang into build/fuzz/ (run: build/fuzz/fuzz-NAME tests/fuzz/corpus/NAME)
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: $(FUZZ_CC) not installed"; exit 1; }
	@mkdir -p build/fuzz
	@set -e; $(foreach n,$(FUZZ_NAMES),echo "  FUZZ $(n)"; $(FUZZ_CC) $(FUZZ_FLAGS) $(XXH_CFLAGS) -o build/fuzz/fuzz-$(n) tests/fuzz/fuzz_$(n).c $(FUZZ_SRCS_$(n)) $(FUZZ_LIBS_$(n));)

-include tests/servers/module.mk
