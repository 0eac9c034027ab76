# seedgate — the one entry point.
#
#   make            build every library and binary into build/
#   make test       install missing Debian packages, build, run every test
#   make demo       install, build, run the whole stack on loopback
#                   (ETCD=1: the seed directory in a local etcd)
#   make help       list the targets
#
# Each component describes itself in its own module.mk (sources, libraries,
# binaries, unit tests, fuzz targets); this file holds the rules they share.

.DEFAULT_GOAL := all
SHELL         := /bin/bash

# ---------------------------------------------------------------------------
# The one list of Debian packages. `make deps` (run by test, demo and bench)
# installs whichever of them is missing. Add a package here and nowhere else.
DEBIAN_PACKAGES := build-essential pkg-config \
	libev-dev libc-ares-dev libssl-dev openssl libwolfssl-dev \
	libxxhash-dev libcmocka-dev libcurl4-openssl-dev libjson-c-dev etcd-server etcd-client \
	haproxy stunnel4 hitch wrk curl socat python3 python3-pytest procps iproute2 util-linux valgrind \
	debhelper dpkg-dev fakeroot adduser systemd man-db prometheus gnuplot-nox debootstrap

# ---------------------------------------------------------------------------
# Toolchain and flags
CC       ?= cc
ifeq ($(origin CC),default)
CC       := gcc
endif
TLS      ?= openssl
B        ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
OPT      ?= -O2 -g

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -I. -Ispoe-agents/lib -Irouter -Itls -Ihealthcheck -Iseeddir
CFLAGS   += -std=c11 $(OPT) $(WARN) -fno-strict-aliasing -MMD -MP -pthread
LDFLAGS  += -pthread

# Libraries: pkg-config where the Debian package ships a .pc file. libev
# ships none, so it is named directly.
PKG_CONFIG ?= pkg-config
pc_cflags   = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pc_libs     = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null || echo $(2))
EV_LIBS      := -lev
CARES_CFLAGS := $(call pc_cflags,libcares)
CARES_LIBS   := $(call pc_libs,libcares,-lcares)
SSL_CFLAGS   := $(call pc_cflags,openssl)
SSL_LIBS     := $(call pc_libs,openssl,-lssl -lcrypto)
WOLF_CFLAGS  := $(call pc_cflags,wolfssl)
WOLF_LIBS    := $(call pc_libs,wolfssl,-lwolfssl)
XXH_CFLAGS   := $(call pc_cflags,libxxhash)
XXH_LIBS     := $(call pc_libs,libxxhash,-lxxhash)
CMOCKA_CFLAGS:= $(call pc_cflags,cmocka)
CMOCKA_LIBS  := $(call pc_libs,cmocka,-lcmocka)

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# ---------------------------------------------------------------------------
# What the modules fill in.
BINS        :=   # installed binaries: $(B)/route-agent ...
UNIT_TESTS  :=   # cmocka test binaries, each run by `make test`
FUZZ_NAMES  :=   # fuzz targets: tests/fuzz/fuzz_<name>.c, corpus tests/fuzz/corpus/<name>/
TOOLS       :=   # built but not installed (demo servers, load generators)
ALL_OBJS    :=

# Object rule shared by every module: build/obj/<path>.o from <path>.c
$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(EXTRA_CFLAGS) -c $< -o $@

# objs_of(list of .c) -> list of objects under $(B)/obj
objs_of = $(patsubst %.c,$(B)/obj/%.o,$(1))

# tests/module.mk first: it defines the macros the modules call.
include tests/module.mk
include seeddir/module.mk
include auth/module.mk
include spoe-agents/module.mk
include router/module.mk
include tls/module.mk
include healthcheck/module.mk
include bench/module.mk

-include $(ALL_OBJS:.o=.d)

# ---------------------------------------------------------------------------
.PHONY: all help deps clang-build test test-unit test-fuzz test-integration asan demo bench soak fuzz install uninstall clean \
	install-service man deb test-chroot bench-plot

all: $(BINS) $(TOOLS) $(UNIT_TESTS) $(FUZZ_REPLAYS) ## build everything into build/

help: ## list the targets
	@echo "seedgate make targets:"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' \
		| sed 's|DESTDIR/PREFIX|$(or $(DESTDIR)$(PREFIX),/)|g' | expand -t 20
	@echo "variables: TLS=openssl|wolfssl  PREFIX=$(PREFIX)  DESTDIR=  SEED=haproxy-conf/seed.conf  CC=$(CC)"

deps: ## install the Debian packages that are missing (as root)
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (apt-get install$$missing)"; exit 1; fi; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi

test: deps ## install what is missing, build, run every test (unit, fuzz replay, integration)
	$(MAKE) all
	@if command -v clang >/dev/null; then $(MAKE) --no-print-directory clang-build; else echo "clang not installed: skipping the clang build"; fi
	SEEDGATE_BUILD=$(abspath $(B)) tests/run-all.sh

clang-build: ## build everything with clang into build/clang (same -Werror flags), as make test does
	$(MAKE) --no-print-directory -s CC=clang B=build/clang all
	@echo "clang build: clean"

asan: deps ## build into build/asan with ASan+UBSan and run the whole suite there
	$(MAKE) B=build/asan SAN=1 all
	SEEDGATE_BUILD=$(abspath build/asan) SEEDGATE_ASAN=1 tests/run-all.sh

demo: deps all ## run the whole stack on loopback (SEED=file for another seed directory, TLS_FRONT=stunnel|hitch|haproxy; ETCD=1: the directory in a local etcd; AUTH=1: project access control)
	SEEDGATE_BUILD=$(abspath $(B)) haproxy-conf/demo.sh $(if $(SEED),--seed $(SEED)) $(if $(TLS_FRONT),--tls-front $(TLS_FRONT)) $(if $(filter-out 0,$(ETCD)),--etcd) $(if $(filter-out 0,$(AUTH)),--auth)

bench: deps all ## benchmarks (minutes); results go to bench/results/
	SEEDGATE_BUILD=$(abspath $(B)) bench/run-all.sh

bench-plot: ## draw bench/results/*.png from the results there (gnuplot; make bench does it too)
	/usr/bin/python3 bench/plot.py

soak: deps all ## faults under load for SOAK_SECONDS (default 240): zero failed GETs, no leaks
	SEEDGATE_BUILD=$(abspath $(B)) SEEDGATE_SOAK=1 SEEDGATE_SOAK_SECONDS=$(or $(SOAK_SECONDS),240) \
		/usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/integration/test_soak.py

# ---------------------------------------------------------------------------
# Installation. Everything a deployment uses, relative to $(DESTDIR)$(PREFIX):
#   bin/                         route-agent healthcheckd seedctl
#   share/seedgate/haproxy-conf/ haproxy.cfg spoe-route.conf run-haproxy.sh
#                                gen-backends.sh seed-targets.sh seed.conf (example)
#   share/seedgate/tls/          make-certs.sh ticket-keys.sh stunnel-conf.sh stunnel-run.sh
#                                hitch-conf.sh hitch-run.sh stunnel.conf.in
#   lib/seedgate/                libsg-hitch.so (hitch-run.sh preloads it into hitch)
#   share/doc/seedgate/          README.md, docs/*.md, haproxy-conf and tls READMEs
# Installed copies point at $(PREFIX), never at the build tree: haproxy.cfg's
# default SG_CONF_DIR is the installed haproxy-conf/, and the scripts find
# seedctl in $(PREFIX)/bin. The demo (demo.sh) runs from a clone only.
# `make uninstall` removes exactly these files, then the directories it made.
SG_SHARE        := $(PREFIX)/share/seedgate
SG_DOC          := $(PREFIX)/share/doc/seedgate
INSTALL_CONF    := haproxy-conf/haproxy.cfg haproxy-conf/spoe-route.conf haproxy-conf/seed.conf
INSTALL_CONF_SH := haproxy-conf/run-haproxy.sh haproxy-conf/seed-targets.sh $(wildcard haproxy-conf/gen-backends.sh)
INSTALL_TLS     := tls/stunnel.conf.in
INSTALL_TLS_SH  := tls/make-certs.sh tls/ticket-keys.sh tls/stunnel-conf.sh tls/stunnel-run.sh tls/hitch-conf.sh \
	tls/hitch-run.sh
INSTALL_DOCS    := README.md $(wildcard docs/*.md)
INSTALLED_FILES := $(addprefix bin/,$(notdir $(BINS))) lib/seedgate/libsg-hitch.so \
	$(addprefix share/seedgate/,$(INSTALL_CONF) $(INSTALL_CONF_SH) $(INSTALL_TLS) $(INSTALL_TLS_SH)) \
	$(addprefix share/doc/seedgate/,$(notdir $(INSTALL_DOCS)) haproxy-conf.md tls.md)
# Rewrites applied to every installed config and script: the default config
# dir, and the build tree's seedctl -> $(PREFIX)/bin.
INSTALL_SED     := -e 's|/usr/local/share/seedgate/haproxy-conf|$(SG_SHARE)/haproxy-conf|g' \
	-e 's|$${SEEDGATE_BUILD:-$$here/../build}/seedctl|$(PREFIX)/bin/seedctl|g' \
	-e 's|^so_dirs=.*|so_dirs="$(PREFIX)/lib/seedgate"|'

install: $(BINS) $(HITCH_SO) ## install binaries, haproxy-conf/, tls/ scripts and docs under DESTDIR/PREFIX
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/seedgate $(DESTDIR)$(SG_SHARE)/haproxy-conf $(DESTDIR)$(SG_SHARE)/tls $(DESTDIR)$(SG_DOC)
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(HITCH_SO) $(DESTDIR)$(PREFIX)/lib/seedgate/
	@set -e; for f in $(INSTALL_CONF) $(INSTALL_TLS); do \
	    sed $(INSTALL_SED) $$f >$(DESTDIR)$(SG_SHARE)/$$f.tmp; chmod 0644 $(DESTDIR)$(SG_SHARE)/$$f.tmp; \
	    mv -f $(DESTDIR)$(SG_SHARE)/$$f.tmp $(DESTDIR)$(SG_SHARE)/$$f; echo "  $(DESTDIR)$(SG_SHARE)/$$f"; done
	@set -e; for f in $(INSTALL_CONF_SH) $(INSTALL_TLS_SH); do \
	    sed $(INSTALL_SED) $$f >$(DESTDIR)$(SG_SHARE)/$$f.tmp; chmod 0755 $(DESTDIR)$(SG_SHARE)/$$f.tmp; \
	    mv -f $(DESTDIR)$(SG_SHARE)/$$f.tmp $(DESTDIR)$(SG_SHARE)/$$f; echo "  $(DESTDIR)$(SG_SHARE)/$$f"; done
	install -m 0644 $(INSTALL_DOCS) $(DESTDIR)$(SG_DOC)/
	install -m 0644 haproxy-conf/README.md $(DESTDIR)$(SG_DOC)/haproxy-conf.md
	install -m 0644 tls/README.md $(DESTDIR)$(SG_DOC)/tls.md
	@# Nothing installed may lead back to this clone's build tree (code
	@# lines; a comment may still tell a developer about build/).
	@if grep -rnE '^[^#]*(SEEDGATE_BUILD|\.\./build|$(CURDIR))' $(DESTDIR)$(SG_SHARE); then \
	    echo "install: the lines above still refer to the build tree"; exit 1; fi

uninstall: ## remove what make install wrote under DESTDIR/PREFIX
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED_FILES))
	-rmdir $(DESTDIR)$(SG_SHARE)/haproxy-conf $(DESTDIR)$(SG_SHARE)/tls $(DESTDIR)$(SG_SHARE) $(DESTDIR)$(SG_DOC) \
	    $(DESTDIR)$(PREFIX)/lib/seedgate 2>/dev/null

# ---------------------------------------------------------------------------
# Running as a service (the Debian package uses these; see debian/rules):
#   $(UNITDIR)/                  route-agent@.service healthcheckd.service
#                                seedctl-register@.service haproxy.service.d/seedgate.conf
#   $(PREFIX)/lib/tmpfiles.d/seedgate.conf    /run/seedgate
#   $(PREFIX)/libexec/seedgate/haproxy-admin-socket
#   $(SYSCONFDIR)/seedgate/      seed.conf (the example), *.env, register.env.example
#   $(PREFIX)/share/man/man{5,7,8}/            the pages of man/
#   share/seedgate/monitoring/   Prometheus alert rules, scrape jobs, Grafana dashboard
#   share/seedgate/haproxy-conf/prometheus.cfg  HAProxy's exporter (the drop-in loads it)
UNITDIR    ?= /lib/systemd/system
SYSCONFDIR ?= /etc
MAN_PAGES  := $(wildcard man/*.[0-9])
UNITS      := systemd/route-agent@.service systemd/healthcheckd.service systemd/seedctl-register@.service
ETC_FILES  := etc/route-agent-1.env etc/route-agent-2.env etc/healthcheckd.env etc/haproxy.env etc/register.env.example
MONITORING := monitoring/seedgate-alerts.yml monitoring/seedgate-dashboard.json monitoring/prometheus-scrape.yml

install-service: ## install units, /etc/seedgate, man pages and monitoring files under DESTDIR
	install -d $(DESTDIR)$(UNITDIR)/haproxy.service.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d \
		$(DESTDIR)$(PREFIX)/libexec/seedgate $(DESTDIR)$(SYSCONFDIR)/seedgate $(DESTDIR)$(SG_SHARE)/monitoring
	install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/haproxy.service.d/seedgate.conf $(DESTDIR)$(UNITDIR)/haproxy.service.d/
	install -m 0644 systemd/seedgate.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/seedgate.conf
	install -m 0755 systemd/haproxy-admin-socket $(DESTDIR)$(PREFIX)/libexec/seedgate/
	install -m 0644 haproxy-conf/seed.conf $(ETC_FILES) $(DESTDIR)$(SYSCONFDIR)/seedgate/
	install -m 0644 $(MONITORING) $(DESTDIR)$(SG_SHARE)/monitoring/
	install -d $(DESTDIR)$(SG_SHARE)/haproxy-conf
	install -m 0644 monitoring/haproxy-prometheus.cfg $(DESTDIR)$(SG_SHARE)/haproxy-conf/prometheus.cfg
	@set -e; for p in $(MAN_PAGES); do s=$${p##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
	    install -m 0644 $$p $(DESTDIR)$(PREFIX)/share/man/man$$s/; done

man: ## check every man page (man/*.[578]) renders without a warning
	@set -e; for p in $(MAN_PAGES); do \
	    out=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l $$p 2>&1 >/dev/null); \
	    if [ -n "$$out" ]; then echo "$$p: $$out"; exit 1; fi; echo "  $$p: ok"; done

# The package is built from a copy of the tree (tracked and new files) under
# $(B)/deb-src, so dpkg-buildpackage's outputs never land beside the clone.
DEB_SRC := $(B)/deb-src/seedgate
deb: ## build the Debian package build/seedgate_*.deb (dpkg-buildpackage, debhelper)
	rm -rf $(B)/deb-src && mkdir -p $(DEB_SRC)
	git ls-files -co --exclude-standard -z | grep -zv '^build/' | xargs -0 cp --parents -t $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc --no-pre-clean >../build.log 2>&1 \
		|| { tail -40 ../build.log; exit 1; }
	rm -f $(B)/seedgate_*.deb && cp $(B)/deb-src/seedgate_*.deb $(B)/
	@ls -l $(B)/seedgate_*.deb

test-chroot: deb ## install the package with apt in a fresh debootstrap'ed Debian 12 (minutes, needs the archive)
	SEEDGATE_BUILD=$(abspath $(B)) SEEDGATE_CHROOT=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/integration/test_package.py -k chroot

clean: ## remove build/
	rm -rf build
