# refuse "EXPECTED TEXT" ARGS... : "$BIN" ARGS exits with code 2, EXPECTED TEXT is on the last
# line of its stderr, and no "$DIR/out" is left behind. Sourced by the asl_resnet tests, which
# set BIN and DIR and give refused commands --out "$DIR/out".
refuse() {
  local expected=$1
  shift
  set +e
  "$BIN" "$@" > /dev/null 2> "$DIR/err"
  local code=$?
  set -e
  if [ $code != 2 ] || ! tail -n 1 "$DIR/err" | grep -qF -- "$expected" || [ -e "$DIR/out" ]; then
    echo "FAILED: $(basename "$BIN") $* -> exit $code, stderr:"; cat "$DIR/err"
    [ -e "$DIR/out" ] && echo "(and $DIR/out was left behind)"
    exit 1
  fi
}
