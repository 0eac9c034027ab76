# router/module.mk — build wiring for router (see tests/module.mk for the macros)
