# Build rules of ebats for the Makefile that phpize and configure generate (see config.m4).
# `make` runs cargo (incremental: an up-to-date target directory is reused as it is), then copies the
# library to modules/ebats.so; `make install` copies modules/* to the PHP's extension directory.
# CARGO_TARGET_DIR, when set, is where cargo builds (default: target/ of the source tree).

$(phplibdir)/ebats.la: ebats-cargo-build
	@mkdir -p $(phplibdir)
	@target_dir="$${CARGO_TARGET_DIR:-$(srcdir)/target}"; \
	lib="$$target_dir/release/libebats.so"; \
	if test ! -f "$$lib"; then echo "ebats: cargo produced no $$lib" >&2; exit 1; fi; \
	cp -f "$$lib" $(phplibdir)/ebats.so.tmp && mv -f $(phplibdir)/ebats.so.tmp $(phplibdir)/ebats.so
	@printf "# ebats.la - made by the ebats Makefile (the module is built by cargo, not libtool)\ndlname='ebats.so'\nlibrary_names='ebats.so'\n" >$@
	@echo "Built $(phplibdir)/ebats.so"

ebats-cargo-build:
	cd $(srcdir) && $(EBATS_CARGO_ENV) $(CARGO) build --release

.PHONY: ebats-cargo-build

# `make test`: the .phpt tests of tests/phpt, with modules/ebats.so loaded (no broker needed). The full
# suite (PHPUnit, against a RabbitMQ broker) is scripts/test.
TESTS = $(srcdir)/tests/phpt
