# healthcheck/module.mk — build wiring for healthcheck (see tests/module.mk for the macros)
