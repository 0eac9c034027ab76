# tls/module.mk — build wiring for tls (see tests/module.mk for the macros)
