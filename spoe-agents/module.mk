# spoe-agents/module.mk — build wiring for spoe-agents (see tests/module.mk for the macros)
