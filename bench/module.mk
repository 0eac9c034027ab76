# bench/module.mk — build wiring for bench (see tests/module.mk for the macros)
