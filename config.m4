dnl config.m4 of ebats, for phpize:
dnl
dnl   phpize && ./configure --enable-ebats && make && make install
dnl
dnl ebats is a Rust crate (Cargo.toml), so there is no C to compile: `make` runs `cargo build --release`
dnl against the PHP that phpize and php-config belong to (or --with-php-config=...), puts the library in
dnl modules/ebats.so, and `make install` copies it to that PHP's extension directory. Needs a Rust
dnl toolchain: cargo on the PATH, in ~/.cargo/bin, or named with CARGO=/path/to/cargo.

PHP_ARG_ENABLE([ebats],
  [whether to enable ebats],
  [AS_HELP_STRING([--enable-ebats],
    [Build ebats, the event-based asynchronous task system on RabbitMQ (built by cargo)])],
  [no])

if test "$PHP_EBATS" != "no"; then
  AC_ARG_VAR([CARGO], [the cargo program that builds ebats])
  AC_PATH_PROG([CARGO], [cargo], [no], [$PATH$PATH_SEPARATOR$HOME/.cargo/bin])
  if test "$CARGO" = "no"; then
    AC_MSG_ERROR([cargo not found: install a Rust toolchain (https://rustup.rs) or name it with CARGO=/path/to/cargo])
  fi

  dnl The PHP to build against: the one this configure was made for.
  AC_MSG_CHECKING([for the php-config ebats is built against])
  EBATS_PHP_CONFIG=`command -v "$PHP_CONFIG" 2>/dev/null`
  if test -z "$EBATS_PHP_CONFIG" || test ! -x "$EBATS_PHP_CONFIG"; then
    AC_MSG_ERROR([php-config not found: $PHP_CONFIG])
  fi
  AC_MSG_RESULT([$EBATS_PHP_CONFIG])
  if test -z "$PHP_EXECUTABLE" || test ! -x "$PHP_EXECUTABLE"; then
    AC_MSG_ERROR([$EBATS_PHP_CONFIG names no PHP binary (php-config --php-binary); the build needs the PHP CLI])
  fi

  dnl The build of the PHP bindings finds php and php-config on the PATH unless the variables PHP and
  dnl PHP_CONFIG name them. Name them only when the PATH would find another PHP: cargo rebuilds the
  dnl bindings, and all that depends on them, whenever these variables change, so a build for the PHP of
  dnl the PATH stays the same build as a plain `cargo build --release` and reuses its target directory.
  ebats_same_php=yes
  ebats_path_php=`command -v php 2>/dev/null`
  ebats_path_config=`command -v php-config 2>/dev/null`
  if test -z "$ebats_path_php" || test -z "$ebats_path_config" ||
     test "`readlink -f "$ebats_path_php"`" != "`readlink -f "$PHP_EXECUTABLE"`" ||
     test "`readlink -f "$ebats_path_config"`" != "`readlink -f "$EBATS_PHP_CONFIG"`"; then
    ebats_same_php=no
  fi
  if test "$ebats_same_php" = "yes"; then
    EBATS_CARGO_ENV=
  else
    EBATS_CARGO_ENV="PHP='$PHP_EXECUTABLE' PHP_CONFIG='$EBATS_PHP_CONFIG'"
  fi
  AC_MSG_CHECKING([for the PHP the PHP bindings are generated from])
  AC_MSG_RESULT([$PHP_EXECUTABLE])

  dnl No C sources: the module is the file the Makefile fragment makes from cargo's output. The .la
  dnl file beside it is what `make test` reads to load the module (as for a libtool-built extension).
  PHP_MODULES="\$(phplibdir)/ebats.la"
  PHP_ADD_BUILD_DIR([modules])
  PHP_SUBST(CARGO)
  PHP_SUBST(EBATS_CARGO_ENV)
  PHP_SUBST(EBATS_PHP_CONFIG)
  PHP_ADD_MAKEFILE_FRAGMENT([$abs_srcdir/Makefile.frag], [$abs_srcdir], [$abs_builddir])
fi
