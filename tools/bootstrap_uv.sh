#!/bin/sh
# Make `uv` available to the Makefile without ever changing the system Python.
#
# Stock Debian/Ubuntu Pythons are "externally managed" (PEP 668): a plain
# `python3 -m pip install uv` is refused, and `--break-system-packages` would
# mix pip's files into the distribution's. Everything here installs into a
# private tools directory inside the checkout (.tools/, git-ignored) and puts
# one link, $UV_TOOLS_DIR/bin/uv, where the Makefile looks first. In order:
#
#   0. uv already on PATH (or already in .tools/bin): nothing to do.
#   1. a uv that pip already installed into this Python (`python3 -m uv`).
#   2. a private virtual environment: python3 -m venv .tools/venv; its pip
#      installs uv there (a venv is not externally managed).
#   3. when `python3 -m venv` is unavailable (Debian without python3-venv):
#      `python3 -m pip install --target .tools/pip-target uv`. PEP 668 does not
#      apply to --target, and nothing is written outside .tools/.
#   4. when this Python has no pip either: uv's standalone installer as an
#      unmanaged install into .tools/bin (shell profiles are left alone).
#
# Environment: UV_TOOLS_DIR (default ./.tools), BOOTSTRAP_PYTHON (default python3).
# Removing the tools directory undoes everything this script did.
set -eu

TOOLS=${UV_TOOLS_DIR:-$(pwd)/.tools}
PY=${BOOTSTRAP_PYTHON:-python3}
BIN=$TOOLS/bin

say() { printf 'ensure-uv: %s\n' "$*" >&2; }
ok() {
    "$BIN/uv" --version >/dev/null 2>&1 || return 1
    say "uv installed via $1 -> $BIN/uv ($("$BIN/uv" --version))"
    exit 0
}

if command -v uv >/dev/null 2>&1 || [ -x "$BIN/uv" ]; then
    exit 0
fi
mkdir -p "$BIN"

# 1. uv that pip put into this Python earlier (the wheel ships the binary).
if found=$("$PY" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null); then
    ln -sf "$found" "$BIN/uv"
    ok "the uv module of $PY"
fi

PIP_QUIET="--quiet --disable-pip-version-check --no-input"

# 2. A private virtual environment.
if "$PY" -m venv "$TOOLS/venv" >/dev/null 2>&1 && [ -x "$TOOLS/venv/bin/python" ]; then
    say "installing uv into a private venv ($TOOLS/venv)"
    # shellcheck disable=SC2086
    if "$TOOLS/venv/bin/python" -m pip install $PIP_QUIET uv; then
        ln -sf ../venv/bin/uv "$BIN/uv"
        ok "a private venv"
    fi
    say "pip in the private venv could not install uv"
else
    say "$PY -m venv is unavailable (on Debian/Ubuntu: apt install python3-venv)"
fi
rm -rf "$TOOLS/venv"

# 3. pip --target: the externally-managed check does not apply, the system is untouched.
if "$PY" -m pip --version >/dev/null 2>&1; then
    say "installing uv with pip --target $TOOLS/pip-target"
    # shellcheck disable=SC2086
    if "$PY" -m pip install $PIP_QUIET --target "$TOOLS/pip-target" uv; then
        ln -sf ../pip-target/bin/uv "$BIN/uv"
        ok "pip --target"
    fi
    rm -rf "$TOOLS/pip-target"
fi

# 4. The standalone installer, confined to $BIN.
INSTALLER=https://astral.sh/uv/install.sh
if command -v curl >/dev/null 2>&1; then
    say "installing uv with the standalone installer into $BIN"
    curl -LsSf "$INSTALLER" | env UV_UNMANAGED_INSTALL="$BIN" sh >&2 && ok "the standalone installer"
elif command -v wget >/dev/null 2>&1; then
    say "installing uv with the standalone installer into $BIN"
    wget -qO- "$INSTALLER" | env UV_UNMANAGED_INSTALL="$BIN" sh >&2 && ok "the standalone installer"
fi

say "could not install uv. Install it yourself (https://docs.astral.sh/uv/) and rerun,"
say "or install python3-venv / python3-pip and rerun."
exit 1
