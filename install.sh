#!/bin/sh
# Installs ocidl, the static binary for this machine, from the registry it is published on.
#
#   curl -fsSL https://raw.githubusercontent.com/OWNER/ocidl/main/install.sh | sh
#   wget -qO- https://raw.githubusercontent.com/OWNER/ocidl/main/install.sh | sh
#   sh install.sh [-d DIR] [IMAGE]          (piped: ... | sh -s -- -d DIR IMAGE)
#
# IMAGE is REGISTRY/PATH[:TAG] of an ocidl release (default below); `http://` in front means
# a plain-HTTP registry. DIR defaults to /usr/local/bin for root, else ~/.local/bin.
# OCIDL_ARCH installs the binary for another machine (a `uname -m` value, e.g. aarch64).
#
# POSIX sh: busybox ash and busybox wget are enough; curl is used where it is present. The
# binary is checked against the sha256 its manifest names before it is made executable, and
# on any error nothing is left behind.
set -u

image="${OCIDL_IMAGE:-ghcr.io/ocidl/ocidl:latest}"
dir="${OCIDL_INSTALL_DIR:-}"

# One line on stderr; control characters a server put in $2 are dropped, not printed.
fail() { printf 'install.sh: %s: %s\n' "$1" "$2" | tr -d '\000-\011\013-\037\177' >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	-d) [ $# -ge 2 ] || fail "-d" "needs a directory"; dir="$2"; shift 2 ;;
	-h | --help)
		echo "usage: install.sh [-d DIR] [REGISTRY/PATH[:TAG]]   (default: $image)"
		exit 0
		;;
	-*) fail "$1" "unknown option (try -h)" ;;
	*) image="$1"; shift ;;
	esac
done

# The OCI platform of the machine, as `make publish` names them.
machine="${OCIDL_ARCH:-$(uname -m)}"
case "$machine" in
x86_64 | amd64) arch=amd64 variant= ;;
aarch64 | arm64) arch=arm64 variant= ;;
armv7* | armv8l | armhf) arch=arm variant=v7 ;;
riscv64) arch=riscv64 variant= ;;
i386 | i486 | i586 | i686 | x86) arch=386 variant= ;;
*) fail "uname -m says $machine" "no ocidl is built for this machine" ;;
esac
platform="linux/$arch${variant:+/$variant}"

[ -n "$dir" ] || if [ "$(id -u)" = 0 ]; then dir=/usr/local/bin; else dir="${HOME:?}/.local/bin"; fi

scheme=https
case "$image" in
http://*) scheme=http image="${image#http://}" ;;
https://*) image="${image#https://}" ;;
esac
host="${image%%/*}"
path="${image#*/}"
[ "$host" != "$image" ] && [ -n "$path" ] || fail "$image" "not REGISTRY/PATH[:TAG]"
tag=latest
case "${path##*/}" in *:*) tag="${path##*:}" path="${path%:*}" ;; esac
api="$scheme://$host/v2/$path"
protocols='=http,https' redirects='=https'
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout 600"
[ "$scheme" = http ] && redirects='=http,https'

# Everything is written under one temporary directory beside the target, so the final step
# is a rename, and an error or a signal removes all of it (and DIR, if this run made it).
made_dir=
cleanup() {
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
	[ -n "$made_dir" ] && rmdir "$dir" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if [ ! -d "$dir" ]; then
	mkdir -p "$dir" 2>/dev/null || fail "$dir" "cannot create the directory"
	made_dir=1
fi
tmp="$(mktemp -d "$dir/.ocidl-install.XXXXXX" 2>/dev/null)" || fail "$dir" "not writable"

if command -v curl >/dev/null 2>&1; then downloader=curl
elif command -v wget >/dev/null 2>&1; then downloader=wget
else fail "download" "neither curl nor wget is installed"
fi

# get URL FILE ACCEPT: the body into FILE, true on a 2xx answer. Otherwise $why says what
# went wrong and $refused is set for a 401; with curl, $tmp/headers holds its challenge
# (busybox wget shows no headers of an error).
authorization="Bearer QQ=="
get() {
	rm -f "$tmp/headers" "$tmp/error"
	refused='' why=''
	# An empty value would still send the header: the token request goes without one.
	auth_header="Authorization: $authorization"
	[ -n "$authorization" ] || auth_header="X-No-Authorization: 1"
	if [ "$downloader" = curl ]; then
		# http(s) only, never from https to http on a redirect, and nothing waits for
		# ever: 30 s to connect, and under 1 KiB/s for 30 s is a failure.
		code="$(curl -sS -L --proto "$protocols" --proto-redir "$redirects" \
			--connect-timeout 30 --speed-limit 1024 --speed-time 30 \
			-o "$2" -D "$tmp/headers" -w '%{http_code}' \
			-H "Accept: $3" -H "$auth_header" "$1" 2>"$tmp/error")"
		case "$code" in
		2??) return 0 ;;
		000) why="$(sed -n '1s/^curl: ([0-9]*) //p' "$tmp/error")" ;;
		*) why="HTTP $code" ;;
		esac
		[ "$code" = 401 ] && refused=1
	else
		# busybox wget has no timeout of its own: its `timeout` applet bounds it instead.
		$limit wget -q -O "$2" --header "Accept: $3" --header "$auth_header" "$1" \
			2>"$tmp/error" && return 0
		why="$(sed -n '1s/^wget: //p' "$tmp/error")"
		grep -q ' 401 ' "$tmp/error" && refused=1
	fi
	[ -n "$why" ] || why="download failed"
	return 1
}

# ghcr.io takes the anonymous `Bearer QQ==` for public packages; elsewhere a refusal is
# answered with an anonymous token from the registry's token service (the realm of its
# challenge; with busybox wget, which cannot show it, HOST/token as on ghcr.io).
get_authorized() { # URL FILE ACCEPT
	get "$@" && return 0
	[ -n "$refused" ] && [ -z "$token" ] || return 1
	challenge=
	[ -f "$tmp/headers" ] && challenge="$(tr -d '\r' <"$tmp/headers" |
		sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *[Bb]earer *//p' | tail -n 1)"
	realm="$(echo "$challenge" | sed -n 's/.*realm="\([^"]*\)".*/\1/p')"
	service="$(echo "$challenge" | sed -n 's/.*service="\([^"]*\)".*/\1/p')"
	[ -n "$realm" ] || realm="$scheme://$host/token" service="${service:-$host}"
	# The realm is the server's word: an http(s) URL, and not plain HTTP for a TLS registry.
	case "$realm" in
	https://*) ;;
	http://*) [ "$scheme" = http ] || { why="the token realm $realm is plain HTTP"; return 1; } ;;
	*) why="the token realm is not an http(s) URL"; return 1 ;;
	esac
	authorization=
	get "$realm?scope=repository:$path:pull&service=$service" "$tmp/token" application/json || {
		why="token from $realm: $why"
		return 1
	}
	token="$(tr -d ' \n\r\t' <"$tmp/token" | sed -n 's/.*"\(access_\)\{0,1\}token":"\([^"]*\)".*/\2/p')"
	[ -n "$token" ] || { why="no token in the answer of $realm"; return 1; }
	authorization="Bearer $token"
	get "$@"
}
token=

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# The digest of the descriptor in JSON file $1 whose text matches $2. `make publish` writes
# one descriptor per `{"mediaType"`, and a registry serves a manifest's bytes as pushed.
descriptor_digest() {
	tr -d ' \n\r\t' <"$1" | sed 's/{"mediaType"/\n&/g' | grep -e "$2" | head -n 1 |
		sed -n 's/.*"digest":"sha256:\([0-9a-f]\{64\}\)".*/\1/p'
}

index_type=application/vnd.oci.image.index.v1+json
manifest_type=application/vnd.oci.image.manifest.v1+json
get_authorized "$api/manifests/$tag" "$tmp/index" "$index_type,$manifest_type" ||
	fail "$image" "cannot fetch the release index: $why"

wanted="\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"${variant:+,\"variant\":\"$variant\"}}"
manifest="$(descriptor_digest "$tmp/index" "$wanted")"
[ -n "$manifest" ] || fail "$image" "no build for $platform in the release index"
get_authorized "$api/manifests/sha256:$manifest" "$tmp/manifest" "$manifest_type" ||
	fail "$image" "cannot fetch the manifest for $platform: $why"
[ "$(sha256 "$tmp/manifest")" = "$manifest" ] ||
	fail "$image" "the manifest for $platform does not match its digest"

blob="$(descriptor_digest "$tmp/manifest" '"org.opencontainers.image.title":"ocidl"')"
[ -n "$blob" ] || fail "$image" "the manifest for $platform has no layer titled ocidl"
get_authorized "$api/blobs/sha256:$blob" "$tmp/ocidl" application/octet-stream ||
	fail "$image" "cannot download the binary for $platform: $why"
[ "$(sha256 "$tmp/ocidl")" = "$blob" ] ||
	fail "$image" "the binary for $platform does not match its sha256 (sha256:$blob)"

chmod 755 "$tmp/ocidl" || fail "$dir/ocidl" "cannot make it executable"
mv -f "$tmp/ocidl" "$dir/ocidl" || fail "$dir/ocidl" "cannot rename it into place"
made_dir=
echo "installed $dir/ocidl ($platform, sha256:$(echo "$blob" | cut -c1-12))"
case ":${PATH:-}:" in
*":$dir:"*) ;;
*) echo "note: $dir is not in PATH" ;;
esac
