#!/usr/bin/env bash
# The code's habits, checked: every C++ file formatted as .clang-format says,
# and clang-tidy (.clang-tidy) clean on the C++ files a change touches.
#
#   scripts/lint.sh              check; exit 1 naming each file that differs
#   scripts/lint.sh --fix        format every C++ file in place
#   LINT_BASE=<rev> scripts/lint.sh
#                                clang-tidy on the .cc files changed since <rev>
#                                (default: the parent commit); needs a build
#                                directory with compile_commands.json
#                                (BUILD_DIR, default build)
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.h' '*.cc' | grep -v '^third_party/')

if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi

status=0
differ=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then differ+=("$f"); fi
done
if [[ ${#differ[@]} -gt 0 ]]; then
  echo "lint: ${#differ[@]} file(s) not formatted as .clang-format says (make format fixes):" >&2
  printf '  %s\n' "${differ[@]}" >&2
  status=1
fi

build_dir="${BUILD_DIR:-build}"
base="${LINT_BASE:-HEAD~1}"
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
  echo "lint: no commit '$base' to compare with; clang-tidy skipped" >&2
  exit $status
fi
if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "lint: $build_dir/compile_commands.json missing (build first); clang-tidy skipped" >&2
  exit 1
fi
mapfile -t changed < <(git diff --name-only --diff-filter=AM "$base" -- '*.cc' |
  grep -E '^(src|tests|integration|bench|fuzz)/' || true)
for f in "${changed[@]}"; do
  # Only files the build compiles (a removed or generated file has no entry).
  grep -q "\"file\": \".*/$f\"" "$build_dir/compile_commands.json" || continue
  if ! clang-tidy -p "$build_dir" --quiet --warnings-as-errors='*' "$f" 2>/dev/null; then
    echo "lint: clang-tidy finds the above in $f" >&2
    status=1
  fi
done
echo "lint: ${#files[@]} files formatted; clang-tidy on ${#changed[@]} changed since $base" >&2
exit $status
