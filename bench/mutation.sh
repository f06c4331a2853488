#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut (slow: run by hand, not in CI).
#
#   bench/mutation.sh                      # every module listed in pyproject's [tool.mutmut]
#   bench/mutation.sh 'app.pull.lease*'    # only the mutants of one module (mutmut's name globs)
#
# Each mutant (one small change to the code) is run against the tests that reach it; a mutant
# the tests do not notice "survived". Prints the summary; `mutmut results` lists survivors and
# `mutmut show <name>` shows one. Survivors are explained or killed in docs/mutation.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/mutmut ]; then
    python3.11 -m venv .venv 2>/dev/null || true
    .venv/bin/pip install -q -e '.[test,mutation]'
fi
rm -rf mutants  # mutmut's working copy of the tree; start from the code as it is now
.venv/bin/mutmut run "$@" || true  # exits non-zero when mutants survive; the summary says
.venv/bin/mutmut results
