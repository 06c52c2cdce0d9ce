#!/usr/bin/env bash
# Black-box tests of `komoku keyka …` against the golden files.
#   keyka_cli_test.sh KOMOKU DATA_DIR
# DATA_DIR is tests/data/keyka (golden .tsv/.keyka pairs and broken/).
# Prints each check; exits non-zero on the first failure.
set -euo pipefail

komoku=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/keyka-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "ok: $*"; }
kk() { "$komoku" keyka "$@"; }

hex_keys() { case "$1" in binary-*|series-*) echo --hex ;; esac; }

# pack each golden TSV; the bytes equal the golden file; verify; dump | pack.
for tsv in "$data"/*.tsv; do
  name=$(basename "$tsv" .tsv)
  hex=$(hex_keys "$name")
  kk pack $hex "$work/$name.keyka" "$tsv" || fail "pack $name"
  cmp "$work/$name.keyka" "$data/$name.keyka" || fail "pack $name differs from golden"
  kk pack $hex "$work/$name.stdin.keyka" < "$tsv" || fail "pack $name from stdin"
  cmp "$work/$name.stdin.keyka" "$data/$name.keyka" || fail "pack $name from stdin differs"
  kk verify "$data/$name.keyka" > /dev/null || fail "verify $name"
  kk dump $hex "$data/$name.keyka" > "$work/$name.dump"
  cmp "$work/$name.dump" "$tsv" || fail "dump $name differs from its tsv"
  kk dump $hex "$data/$name.keyka" | kk pack $hex "$work/$name.again.keyka"
  cmp "$work/$name.again.keyka" "$data/$name.keyka" || fail "dump | pack $name"
  check "$name: pack, verify, dump | pack"
done

# Every golden pair is found by get.
while IFS= read -r line; do
  key=${line%$'\t'*} value=${line##*$'\t'}
  [[ "$(kk get "$data/text-100.keyka" "$key")" == "$key"$'\t'"$value" ]] || fail "get $key"
done < "$data/text-100.tsv"
head -40 "$data/binary-300.tsv" | while IFS= read -r line; do
  key=${line%$'\t'*} value=${line##*$'\t'}
  [[ "$(kk get --hex "$data/binary-300.keyka" "$key")" == "$key"$'\t'"$value" ]] ||
    fail "get --hex $key"
done
check "get finds golden pairs"

abc=$data/example-abc.keyka
[[ "$(kk get "$abc" b)" == $'b\t2' ]] || fail "get b"
if kk get "$abc" bb 2> "$work/err"; then fail "get of a missing key succeeded"; fi
grep -q "not found" "$work/err" || fail "get missing: no reason given"
[[ "$(kk nearest "$abc" bb --ge)" == $'c\t3' ]] || fail "nearest --ge"
[[ "$(kk nearest "$abc" b --gt)" == $'c\t3' ]] || fail "nearest --gt"
[[ "$(kk nearest "$abc" bb --le)" == $'b\t2' ]] || fail "nearest --le"
[[ "$(kk nearest "$abc" b --lt)" == $'a\t1' ]] || fail "nearest --lt"
if kk nearest "$abc" a --lt 2> /dev/null; then fail "nearest --lt below the first key"; fi
if kk nearest "$abc" a 2> /dev/null; then fail "nearest without a direction"; fi
[[ "$(kk nearest --hex "$abc" 6262 --ge)" == $'63\t3' ]] || fail "nearest --hex"
check "get and nearest"

t100=$data/text-100.keyka
[[ "$(kk range "$t100" key0010 key0013 | cut -f1 | tr '\n' ' ')" == "key0010 key0011 key0012 " ]] ||
  fail "range"
[[ "$(kk range --reverse "$t100" key0010 key0013 | cut -f1 | tr '\n' ' ')" == \
   "key0012 key0011 key0010 " ]] || fail "range --reverse"
[[ -z "$(kk range "$t100" key0013 key0010)" ]] || fail "empty range"
[[ "$(kk prefix "$t100" key009 | wc -l)" -eq 10 ]] || fail "prefix count"
[[ "$(kk prefix "$t100" key009 | head -1)" == $'key0090\t631' ]] || fail "prefix first"
[[ "$(kk prefix --hex "$data/series-150.keyka" 6b69746368656e | wc -l)" -eq \
   "$(grep -c '^6b69746368656e' "$data/series-150.tsv")" ]] || fail "prefix --hex"
check "range and prefix"

for broken in "$data"/broken/*.keyka; do
  if kk verify "$broken" 2> "$work/err"; then fail "verify accepted $broken"; fi
  grep -q "Corruption" "$work/err" || fail "verify $broken: $(cat "$work/err")"
done
check "verify rejects every broken file"

kk stats "$t100" > "$work/stats"
grep -qx $'keys\t100' "$work/stats" || fail "stats keys"
grep -qx $'depth\t7' "$work/stats" || fail "stats depth"
check "stats"

# Refusals leave no file behind and name the line and key.
printf 'b\t1\na\t2\n' > "$work/unsorted.tsv"
if kk pack "$work/unsorted.keyka" "$work/unsorted.tsv" 2> "$work/err"; then
  fail "pack accepted unsorted input"
fi
grep -q "unsorted.tsv:2: .*key 'a' is out of order" "$work/err" || fail "unsorted: $(cat "$work/err")"
printf 'a\t1\na\t2\n' | { if kk pack "$work/dup.keyka" 2> "$work/err"; then fail "dup"; fi; }
grep -q "duplicate key 'a'" "$work/err" || fail "duplicate: $(cat "$work/err")"
printf 'a\tx1\n' | { if kk pack "$work/bad.keyka" 2> "$work/err"; then fail "bad value"; fi; }
grep -q "not a decimal uint64" "$work/err" || fail "bad value: $(cat "$work/err")"
[[ -z "$(ls "$work" | grep -E '^(unsorted|dup|bad)\.keyka')" ]] || fail "refused pack left a file"
check "pack refusals"
echo "all keyka CLI checks passed"
