#!/usr/bin/env bash
# Colab as it really is: rebuild the packages a Colab GPU runtime has preinstalled (tests/colab/colab-pins.txt),
# install samkit into it the way the notebooks' Colab cell does (a plain `pip install`, which must keep the
# runtime's torch, numpy and ipywidgets), then execute every notebook's small configuration with
# `python -m samkit.runner --small`, from a folder that holds only the notebooks (as on Colab, where the
# repository is not checked out).
#
#   bash tests/colab/run_colab_env.sh            # or: make test-colab
#
# Environment:
#   SAMKIT_COLAB_VENV    the virtual environment (default /tmp/samkit-colab-venv; never inside the repository).
#                        It is reused when it was built from the same pins; SAMKIT_COLAB_FRESH=1 rebuilds it.
#   SAMKIT_COLAB_OUT     where logs, pip freezes, the executed notebooks and colab.json go
#                        (default: a new /tmp/samkit-colab-run.XXXXXX).
#   SAMKIT_COLAB_PYTHON  the interpreter that creates the venv (default python3; Colab has 3.12, the local
#                        torch wheels are cp311).
#   SAMKIT_COLAB_NOTEBOOKS  which notebooks (runner's --notebooks, e.g. 01,02; default all).
#
# Time on the 2-core machine: building the environment the first time took 8.5 min under heavy load (PyPI
# downloads of ~150 MB, pycocotools/numpy wheels, plus ~4 GB of torch + nvidia wheels copied from the local
# disk); about 1 min when it is reused; `pip install samkit` ~1 min; then the notebooks' small configuration
# (about the time of the notebook tests in `make test`). Budget 10-15 min for a first run.
#
# Fails (exit 1) when installing samkit changes torch, torchvision, numpy, matplotlib or ipywidgets (on Colab
# that means a multi-GB download, a broken CUDA build or a forced runtime restart), when `pip check` finds a
# conflict, or when a notebook fails. Other pinned packages that the install changes are listed as warnings.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PINS="$ROOT/tests/colab/colab-pins.txt"
VENV="${SAMKIT_COLAB_VENV:-/tmp/samkit-colab-venv}"
PYTHON="${SAMKIT_COLAB_PYTHON:-python3}"
OUT="${SAMKIT_COLAB_OUT:-$(mktemp -d /tmp/samkit-colab-run.XXXXXX)}"
CRITICAL="torch torchvision numpy matplotlib ipywidgets"

case "$(realpath -m "$VENV")/" in
  "$ROOT"/*) echo "SAMKIT_COLAB_VENV=$VENV is inside the repository; put it under /tmp" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
T0=$SECONDS
say() { printf '[colab %4ds] %s\n' "$((SECONDS - T0))" "$*"; }

# 1. The runtime: Colab's preinstalled versions.
STAMP="$VENV/.colab-pins.sha256"
want="$(sha256sum "$PINS" | cut -d' ' -f1)"
if [[ "${SAMKIT_COLAB_FRESH:-0}" == 1 || ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  say "building the Colab-like runtime in $VENV (pins: ${PINS#$ROOT/})"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "pip==24.1.2" 2>&1 | tail -3   # Colab's pip
  "$VENV/bin/python" -m pip install -q -r "$PINS" > "$OUT/install-runtime.log" 2>&1 \
    || { tail -30 "$OUT/install-runtime.log"; exit 1; }
  echo "$want" > "$STAMP"
  "$VENV/bin/python" -m pip freeze > "$VENV/.colab-runtime-freeze.txt"
  RUNTIME_FRESH=1
else
  say "reusing the Colab-like runtime in $VENV (SAMKIT_COLAB_FRESH=1 rebuilds it)"
  "$VENV/bin/python" -m pip uninstall -q -y samkit >/dev/null 2>&1 || true
  if [[ -f "$VENV/.colab-runtime-freeze.txt" ]]; then   # remove what a previous samkit install added
    extra="$("$VENV/bin/python" -m pip freeze | grep -vxF -f "$VENV/.colab-runtime-freeze.txt" | sed -e 's/[=@ ].*//' || true)"
    [[ -n "$extra" ]] && "$VENV/bin/python" -m pip uninstall -q -y $extra >/dev/null 2>&1 || true
  fi
  "$VENV/bin/python" -m pip install -q -r "$PINS" > "$OUT/install-runtime.log" 2>&1   # undo a previous run's changes
  RUNTIME_FRESH=0
fi
T_RUNTIME=$((SECONDS - T0))
"$VENV/bin/python" -m pip freeze > "$OUT/freeze-runtime.txt"

# 2. The notebooks' Colab cell: `%pip install "samkit @ git+..."`, here from this checkout (a copy of the tracked
#    files, so the build does not write into the repository).
SRC="$OUT/samkit-src"
rm -rf "$SRC" && mkdir -p "$SRC"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$SRC" 2>/dev/null) \
  || (cd "$ROOT" && tar --exclude=.venv --exclude=.git --exclude=runs -cf - . | tar -xf - -C "$SRC")
say "pip install samkit (as the Colab cell does; torch must be kept)"
T1=$SECONDS
"$VENV/bin/python" -m pip install "$SRC" > "$OUT/install-samkit.log" 2>&1 \
  || { tail -30 "$OUT/install-samkit.log"; exit 1; }
T_INSTALL=$((SECONDS - T1))
"$VENV/bin/python" -m pip freeze > "$OUT/freeze-after.txt"

STATUS=0
"$VENV/bin/python" - "$OUT" "$PINS" "$CRITICAL" <<'PY' || STATUS=1
import json, re, sys
from pathlib import Path

out, pins, critical = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()

def norm(name): return re.sub(r"[-_.]+", "-", name).lower()

def freeze(path):
    got = {}
    for line in path.read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            got[norm(name)] = version.strip()
        elif " @ " in line:
            name, where = line.split(" @ ", 1)
            got[norm(name)] = "@ " + where.strip()
    return got

pinned = {}
for line in pins.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
        name, version = line.split("==")
        pinned[norm(name)] = version
before, after = freeze(out / "freeze-runtime.txt"), freeze(out / "freeze-after.txt")
changed = {n: (before.get(n), after.get(n)) for n in pinned if before.get(n) != after.get(n)}
added = sorted(f"{n}=={after[n]}" for n in after if n not in before and n != "samkit")
bad = sorted(n for n in changed if n in critical)
print("runtime versions after `pip install samkit`:")
for n in pinned:
    b, a = before.get(n), after.get(n)
    mark = "kept" if b == a else ("CHANGED (critical)" if n in critical else "changed (warning)")
    print(f"  {n:22s} {str(b):18s} -> {str(a):18s} {mark}")
print(f"packages the Colab cell adds ({len(added)}): {', '.join(added)}")
json.dump({"changed": changed, "added": added, "critical_changed": bad}, open(out / "install-diff.json", "w"), indent=1)
if bad:
    print(f"FAIL: installing samkit changed {', '.join(bad)}; on Colab this breaks the runtime")
    sys.exit(1)
PY
if ! "$VENV/bin/python" -m pip check > "$OUT/pip-check.txt" 2>&1; then
  say "pip check found conflicts:"; cat "$OUT/pip-check.txt"; STATUS=1
fi

# 3. The kernel the runner starts must be this venv's python.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (Colab-like)" >/dev/null
export JUPYTER_PREFER_ENV_PATH=1 JUPYTER_PATH="$VENV/share/jupyter" SAMKIT_OFFLINE=1
"$VENV/bin/python" - "$VENV" <<'PY'
import os, sys
from jupyter_client.kernelspec import KernelSpecManager
argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
if os.path.realpath(os.path.dirname(argv0)) != os.path.realpath(os.path.join(sys.argv[1], "bin")) and argv0 != "python":
    sys.exit(f"the python3 kernel runs {argv0}, not the Colab-like venv")
PY

# 4. The notebooks, alone in a folder (as on Colab), small configuration, on the installed samkit.
NB="$OUT/notebooks"
mkdir -p "$NB" && cp "$ROOT"/notebooks/[0-9][0-9]_*.ipynb "$NB"/
cd "$OUT"
"$VENV/bin/python" -c "import samkit, torch, numpy, ipywidgets, matplotlib, sys; print('samkit from', samkit.__file__); print('python', sys.version.split()[0], '| torch', torch.__version__, '| numpy', numpy.__version__, '| ipywidgets', ipywidgets.__version__, '| matplotlib', matplotlib.__version__)" | tee "$OUT/versions.txt"
case "$(head -1 "$OUT/versions.txt")" in *"$VENV"*) ;; *) echo "samkit is not imported from the venv" >&2; STATUS=1 ;; esac
say "running the notebooks (small configuration) with samkit.runner"
T2=$SECONDS
RUN_ARGS=(--small -p device cpu --notebook-dir "$NB" --out "$OUT/runs" --name colab --no-progress)
[[ -n "${SAMKIT_COLAB_NOTEBOOKS:-}" ]] && RUN_ARGS+=(--notebooks "$SAMKIT_COLAB_NOTEBOOKS")
"$VENV/bin/python" -m samkit.runner "${RUN_ARGS[@]}" || STATUS=1
T_RUN=$((SECONDS - T2))

cat > "$OUT/colab.json" <<EOF
{"status": $STATUS, "runtime_built": $RUNTIME_FRESH, "seconds": {"runtime": $T_RUNTIME, "install_samkit": $T_INSTALL,
 "notebooks": $T_RUN, "total": $((SECONDS - T0))}, "venv": "$VENV", "out": "$OUT"}
EOF
say "runtime ${T_RUNTIME}s, samkit install ${T_INSTALL}s, notebooks ${T_RUN}s; results in $OUT"
[[ $STATUS == 0 ]] && say "Colab-like environment: OK" || say "Colab-like environment: FAILED"
exit $STATUS
