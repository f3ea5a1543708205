#!/usr/bin/env bash
# Runs README's "`--once` by hand" commands exactly as written (the first ```sh block
# after that phrase), so a broken example fails `make demo`. The emulators it starts in
# the background are stopped on exit; it fails unless the block prints `exit 0`.
set -euo pipefail
cd "$(dirname "$0")/../.."
block="$(python3 - <<'PY'
import re
text = open("README.md").read()
start = text.index("`--once` by hand")
print(re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1))
PY
)"
out="$(mktemp)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -f "$out"' EXIT
# CARGO_TARGET_DIR: the block names target/debug, as a reader without it has.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    block="${block//target\/debug/$CARGO_TARGET_DIR/debug}"
fi
bash -c "set -uo pipefail; trap 'kill \$(jobs -p) 2>/dev/null' EXIT; $block" 2>&1 | tee "$out"
grep -qx 'exit 0' "$out" || { echo "readme/once.sh: FAIL: README's --once example did not exit 0" >&2; exit 1; }
grep -q 'reconciled and Ready cr=demo' "$out" \
    || { echo "readme/once.sh: FAIL: the example's ECRPullSecret was not reconciled" >&2; exit 1; }
echo "readme/once.sh: OK: README's --once example ran against the emulators and exited 0"
