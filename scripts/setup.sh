#!/usr/bin/env bash
# Installs nndsl and everything it needs. torch==2.13.0 first: a bare `torch` requirement would pull
# several GB of CUDA packages, the pinned CPU build comes from a local wheel in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "warning: could not install graphviz; 'nndsl draw' will only write .dot files" >&2
  else
    echo "warning: Graphviz's dot is missing; install it to render diagrams" >&2
  fi
fi
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set (as CI sets it) every new
# process would compile nndsl from source again (about 0.3 s each; the CLI and LSP tests start many):
# compile it once, as a wheel install would.
python -m compileall -q nndsl >/dev/null
