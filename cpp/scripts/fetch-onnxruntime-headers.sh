#!/usr/bin/env bash
# Fetch the ONNX Runtime C/C++ headers from Debian's libonnxruntime-dev (suite trixie) into DEST/include.
#
# Usage: bash cpp/scripts/fetch-onnxruntime-headers.sh [DEST]     (default: cpp/build-deps/onnxruntime)
#
# The Python wheel `onnxruntime` ships libonnxruntime.so.1.* but no headers; the headers of an older
# release work with a newer library because the C API is versioned (OrtGetApiBase()->GetApi(N)).
# The package is fetched with `apt-get download` through the mirror(s) this machine's apt sources
# already name, with the suite changed to trixie, using a temporary sources list, lists directory and
# cache: the machine's apt configuration and state are left untouched. Needs apt-get, dpkg and awk.
# Environment: DNX_ORT_SUITE (default trixie), DNX_ORT_DEB (use this local .deb instead of downloading).
set -euo pipefail

die() { echo "fetch-onnxruntime-headers: $*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/../build-deps/onnxruntime}"
suite="${DNX_ORT_SUITE:-trixie}"
package=libonnxruntime-dev

mkdir -p "$dest" && dest="$(cd "$dest" && pwd)" || die "cannot create $dest"
if [[ -f "$dest/include/onnxruntime_cxx_api.h" ]]; then
    echo "$dest/include"
    exit 0
fi
command -v dpkg >/dev/null || die "dpkg not found (this script needs a Debian-based system)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${DNX_ORT_DEB:-}" ]]; then
    [[ -f "$DNX_ORT_DEB" ]] || die "DNX_ORT_DEB=$DNX_ORT_DEB: no such file"
    deb="$DNX_ORT_DEB"
else
    command -v apt-get >/dev/null || die "apt-get not found; set DNX_ORT_DEB to a downloaded $package .deb"
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || die "cannot tell this system's release codename from /etc/os-release"

    # Entries of the machine's own release (not -updates/-security, not third-party suites), as
    # one-line sources with the codename replaced by $suite.
    shopt -s nullglob
    sources=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] && sources+=("$f")
    done
    [[ ${#sources[@]} -gt 0 ]] || die "no readable apt sources in /etc/apt"
    awk -v codename="$codename" -v suite="$suite" '
        function emit(types, uris, suites, signed,   n, u, i, opt, line) {
            if (types !~ /(^|[ \t])deb([ \t]|$)/ || (" " suites " ") !~ (" " codename " ")) return
            opt = (signed != "" && signed !~ /BEGIN/) ? "[signed-by=" signed "] " : ""
            n = split(uris, u, /[ \t]+/)
            for (i = 1; i <= n; i++) if (u[i] != "") {
                line = "deb " opt u[i] " " codename " main"
                gsub(codename, suite, line)
                print line
            }
        }
        FNR == 1 { if (para && en) emit(t, u, s, k); para = 0; t = u = s = k = ""; en = 1 }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { if (para && en) emit(t, u, s, k); para = 0; t = u = s = k = ""; en = 1; next }
            if ($0 ~ /^#/) next
            para = 1
            key = tolower($1); sub(/^[^:]*:[ \t]*/, "")
            if (key == "types:") t = $0; else if (key == "uris:") u = $0
            else if (key == "suites:") s = $0; else if (key == "signed-by:") k = $0
            else if (key == "enabled:" && tolower($0) == "no") en = 0
            next
        }
        $1 == "deb" {
            opt = ""; i = 2
            if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opt = opt " " $i; i++ } opt = opt " " $i; i++ }
            if ($(i + 1) != codename) next
            line = "deb" opt " " $i " " codename " main"
            gsub(codename, suite, line)
            print line
        }
        END { if (para && en) emit(t, u, s, k) }
    ' "${sources[@]}" | sort -u > "$work/sources.list"

    [[ -s "$work/sources.list" ]] || die "no apt source for '$codename' found in /etc/apt/sources.list*"

    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    apt_opts=(
        -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
        -o "Acquire::Languages=none" -o "APT::Sandbox::User=root" -qq
    )
    echo "fetch-onnxruntime-headers: reading the $suite package index" >&2
    apt-get "${apt_opts[@]}" update >&2 || die "apt-get update for suite $suite failed"
    (cd "$work" && apt-get "${apt_opts[@]}" download "$package" >&2) \
        || die "apt-get download $package (suite $suite) failed"
    debs=("$work"/${package}_*.deb)
    [[ ${#debs[@]} -eq 1 ]] || die "apt-get download did not produce one $package .deb"
    deb="${debs[0]}"
fi

dpkg -x "$deb" "$work/root" || die "cannot unpack $deb"
header="$(find "$work/root" -name onnxruntime_cxx_api.h -print -quit)"
[[ -n "$header" ]] || die "$deb has no onnxruntime_cxx_api.h"

rm -rf "$dest/include"
mkdir -p "$dest/include"
cp -a "$(dirname "$header")"/. "$dest/include/"
dpkg-deb -f "$deb" Version > "$dest/VERSION"
echo "fetch-onnxruntime-headers: $package $(cat "$dest/VERSION") headers in $dest/include" >&2
echo "$dest/include"
