# Sourced by .ci/run and scripts/setup: Debian packages the server or the tests run.
# shellcheck shell=bash

# apt_need WHAT CHECK PACKAGE...
# Runs CHECK (a bash expression); when it fails, installs the PACKAGEs with apt-get (as root,
# else through sudo) and checks again. Returns 1, saying the command to run, when it cannot.
apt_need() {
  local what=$1 check=$2
  shift 2
  if bash -c "$check" >/dev/null 2>&1; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$what is missing: sudo apt-get install $*" >&2
      return 1
    fi
    sudo=(sudo)
    echo "$what is missing: installing $* with sudo apt-get" >&2
  fi
  if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null; }; then
    echo "$what did not install: sudo apt-get install $*" >&2
    return 1
  fi
  bash -c "$check" >/dev/null 2>&1 || { echo "$what is still missing after installing $*" >&2; return 1; }
}
