#!/usr/bin/env bash
# Re-copy Azure's published resource type data (the files the Bicep compiler uses) into tests/data/azure-types/,
# from a local checkout of https://github.com/Azure/bicep-types-az. The Bicep type check
# (tests/contract/test_bicep_types.py) reads only these copies, so a clone of this project passes its tests offline.
#
#   scripts/refresh_azure_types.sh /path/to/bicep-types-az [commit]
#
# Every file already in tests/data/azure-types/ is refreshed from generated/<folder>/<namespace>/<api-version>/
# types.json at the given commit (default: the checkout's HEAD); SOURCE.md records the commit. To add a type or API
# version, create an empty file named <folder>__<namespace>__<api-version>.json there first (the folder is the
# one under generated/ that holds the namespace and version, e.g. monitor_1 for generated/monitor_1/microsoft.insights/).
set -euo pipefail

checkout=${1:?usage: $0 /path/to/bicep-types-az [commit]}
commit=${2:-HEAD}
here=$(cd "$(dirname "$0")/.." && pwd)
target="$here/tests/data/azure-types"
resolved=$(git -C "$checkout" rev-parse "$commit")

for file in "$target"/*.json; do
  name=$(basename "$file" .json)
  IFS='|' read -r folder namespace version <<<"${name//__/|}"
  found="generated/$folder/$namespace/$version/types.json"
  if ! git -C "$checkout" cat-file -e "$resolved:$found" 2>/dev/null; then
    echo "not found in $checkout@$resolved: $found (for $name.json)" >&2
    exit 1
  fi
  git -C "$checkout" show "$resolved:$found" >"$file"
  echo "$name.json <- $found"
done

cat >"$target/SOURCE.md" <<NOTE
# Azure resource type data

Copied unchanged by scripts/refresh_azure_types.sh from https://github.com/Azure/bicep-types-az at commit
\`$resolved\`: \`generated/<folder>/<namespace>/<api-version>/types.json\`, each saved as
\`<folder>__<namespace>__<api-version>.json\`. Read by tests/contract/test_bicep_types.py.
NOTE
