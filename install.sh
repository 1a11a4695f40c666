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

# The bounds of every request: the most bytes its answer may have, and the most seconds it
# may take, connecting, redirects and the whole body included. The release index, a manifest
# and a token answer are a few KiB each; the binary may have exactly the size its manifest
# gives, and that size may not pass max_binary (release binaries are about 2 MB). At most
# five requests are made (the index, the manifest and the binary, a token, and the one
# request a token is asked for again), so a run ends within 2 x 300 + 3 x 60 = 780 s.
max_document=65536
max_binary=67108864
time_document=60
time_binary=300

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

# The binary is renamed over DIR/ocidl. A directory there, or a symlink to one, would take it
# in instead: refused, here and again just before the rename. Anything else there (a file, a
# symlink, dangling or to a file elsewhere) is replaced by the rename, never written through.
refuse_directory() {
	[ ! -d "$dir/ocidl" ] || fail "$dir/ocidl" "is a directory (or a link to one): not replaced"
}
refuse_directory

scheme=https
case "$image" in
http://*) scheme=http image="${image#http://}" ;;
https://*) image="${image#https://}" ;;
esac
host="${image%%/*}"
path="${image#*/}"
if [ "$host" = "$image" ] || [ -z "$path" ]; then fail "$image" "not REGISTRY/PATH[:TAG]"; fi
tag=latest
case "${path##*/}" in *:*) tag="${path##*:}" path="${path%:*}" ;; esac
api="$scheme://$host/v2/$path"
protocols='=http,https' redirects='=https'
[ "$scheme" = http ] && redirects='=http,https'

# DIR with its last N-1 levels taken off: level 1 is DIR, level 2 its parent, and so on.
level() {
	at="$dir" up="$1"
	while [ "$up" -gt 1 ]; do at="$(dirname "$at")" up=$((up - 1)); done
	printf '%s\n' "$at"
}

# Everything is written under one temporary directory beside the target, so the final step
# is a rename, and an error or a signal removes all of it, and each level of DIR this run
# made, deepest first, as long as it is empty.
made=
cleanup() {
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
	for made_level in $made; do rmdir "$(level "$made_level")" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# The levels of DIR that are missing (up to 64) are made one at a time, top first, and each
# one this run made is recorded: `made` lists them deepest first, as `cleanup` removes them.
missing=0
while [ "$missing" -lt 64 ] && [ ! -d "$(level $((missing + 1)))" ]; do missing=$((missing + 1)); done
while [ "$missing" -gt 0 ]; do
	if mkdir "$(level "$missing")" 2>/dev/null; then
		made="$missing $made"
	elif [ ! -d "$(level "$missing")" ]; then
		fail "$dir" "cannot create the directory"
	fi
	missing=$((missing - 1))
done
tmp="$(mktemp -d "$dir/.ocidl-install.XXXXXX" 2>/dev/null)" || fail "$dir" "not writable"

if command -v curl >/dev/null 2>&1; then downloader=curl
elif command -v wget >/dev/null 2>&1; then downloader=wget
else fail "download" "neither curl nor wget is installed"
fi

# A busybox or coreutils `timeout` (busybox before 1.30 took `-t SECS`: not that one) bounds
# busybox wget, which has no time limit of its own here (Debian's busybox-static 1.35 lists
# no -T, and crashes on it). Without one, a watchdog in the shell ends it.
have_timeout=
command -v timeout >/dev/null 2>&1 && timeout 9 true >/dev/null 2>&1 && have_timeout=1

# bounded SECONDS COMMAND...: COMMAND, ended with SIGTERM after SECONDS; its exit status.
bounded() {
	if [ -n "$have_timeout" ]; then timeout "$@"; return; fi
	seconds="$1"
	shift
	"$@" &
	pid=$!
	(
		trap 'kill "${nap:-}" 2>/dev/null; exit 0' TERM
		sleep "$seconds" &
		nap=$!
		wait "$nap" && kill "$pid" 2>/dev/null
	) </dev/null >/dev/null 2>&1 &
	watchdog=$!
	wait "$pid"
	status=$?
	kill "$watchdog" 2>/dev/null
	return "$status"
}

# get URL FILE ACCEPT MAX SECONDS: the body into FILE, true on a 2xx answer that arrived
# whole within SECONDS and has at most MAX bytes. The body goes through `head -c`, so FILE
# never holds more than MAX + 1 bytes whatever the server sends. Otherwise $why says what went
# wrong and $refused is set for a 401; with curl, $tmp/headers holds its challenge (busybox
# wget shows no headers of an error).
authorization="Bearer QQ=="
get() {
	rm -f "$tmp/headers" "$tmp/error" "$tmp/status" "$tmp/write-error"
	refused='' why='' code=''
	# An empty value would still send the header: the token request goes without one.
	auth_header="Authorization: $authorization"
	[ -n "$authorization" ] || auth_header="X-No-Authorization: 1"
	if [ "$downloader" = curl ]; then
		# http(s) only, never from https to http on a redirect, and nothing waits for
		# ever: 30 s to connect, under 1 KiB/s for 30 s is a failure, and so is all of it
		# taking more than SECONDS. --max-filesize refuses a Content-Length over MAX at once.
		{
			curl -sS -L --proto "$protocols" --proto-redir "$redirects" \
				--connect-timeout 30 --speed-limit 1024 --speed-time 30 \
				--max-time "$5" --max-filesize "$4" -D "$tmp/headers" \
				-H "Accept: $3" -H "$auth_header" "$1" 2>"$tmp/error"
			echo "$?" >"$tmp/status"
		} | head -c "$(($4 + 1))" >"$2" 2>"$tmp/write-error"
		wrote=$?
		# The status of the last answer (a redirect's comes before it).
		code="$(tr -d '\r' <"$tmp/headers" 2>/dev/null |
			sed -n 's/^HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | tail -n 1)"
	else
		{
			bounded "$5" wget -q -O - --header "Accept: $3" --header "$auth_header" "$1" \
				2>"$tmp/error"
			echo "$?" >"$tmp/status"
		} | head -c "$(($4 + 1))" >"$2" 2>"$tmp/write-error"
		wrote=$?
	fi
	status="$(cat "$tmp/status" 2>/dev/null)"
	received="$(wc -c <"$2" | tr -d ' ')"
	case "$code" in
	'' | 2??)
		if [ "$wrote" != 0 ]; then
			# `head: standard output: I/O error`, `head: error writing ...: No space left`
			why="cannot write into $dir: $(sed -n '1s/.*: //p' "$tmp/write-error")"
		elif [ "$received" -gt "$4" ] || [ "$status" = 63 ]; then
			why="more than $4 bytes"
		elif [ "$status" = 0 ]; then
			return 0
		elif [ "$downloader" = curl ]; then
			why="$(sed -n '1s/^curl: ([0-9]*) //p' "$tmp/error")"
		elif [ "$status" = 124 ] || [ "$status" = 143 ]; then
			why="timed out after $5 s"
		else
			why="$(sed -n '1s/^wget: //p' "$tmp/error")"
			grep -q ' 401 ' "$tmp/error" && refused=1
		fi
		;;
	401) why="HTTP $code" refused=1 ;;
	*) why="HTTP $code" ;;
	esac
	[ -n "$why" ] || why="download failed (exit status ${status:-unknown})"
	return 1
}

# ghcr.io takes the anonymous `Bearer QQ==` for public packages; elsewhere a refusal is
# answered with an anonymous token from the registry's token service (the realm of its
# challenge; with busybox wget, which cannot show it, HOST/token as on ghcr.io).
get_authorized() { # URL FILE ACCEPT MAX SECONDS
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
	get "$realm?scope=repository:$path:pull&service=$service" "$tmp/token" application/json \
		"$max_document" "$time_document" || {
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

# The descriptor in JSON file $1 whose text matches $2. `make publish` writes one descriptor
# per `{"mediaType"`, and a registry serves a manifest's bytes as pushed.
descriptor() { tr -d ' \n\r\t' <"$1" | sed 's/{"mediaType"/\n&/g' | grep -e "$2" | head -n 1; }
descriptor_digest() { descriptor "$@" | sed -n 's/.*"digest":"sha256:\([0-9a-f]\{64\}\)".*/\1/p'; }
# Its size: a decimal of at most 9 digits without a leading 0 (no shell reads it as octal).
descriptor_size() { descriptor "$@" | sed -n 's/.*"size":\([1-9][0-9]\{0,8\}\)[,}].*/\1/p'; }

index_type=application/vnd.oci.image.index.v1+json
manifest_type=application/vnd.oci.image.manifest.v1+json
get_authorized "$api/manifests/$tag" "$tmp/index" "$index_type,$manifest_type" \
	"$max_document" "$time_document" ||
	fail "$image" "cannot fetch the release index: $why"

wanted="\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"${variant:+,\"variant\":\"$variant\"}}"
manifest="$(descriptor_digest "$tmp/index" "$wanted")"
[ -n "$manifest" ] || fail "$image" "no build for $platform in the release index"
get_authorized "$api/manifests/sha256:$manifest" "$tmp/manifest" "$manifest_type" \
	"$max_document" "$time_document" ||
	fail "$image" "cannot fetch the manifest for $platform: $why"
[ "$(sha256 "$tmp/manifest")" = "$manifest" ] ||
	fail "$image" "the manifest for $platform does not match its digest"

title='"org.opencontainers.image.title":"ocidl"'
blob="$(descriptor_digest "$tmp/manifest" "$title")"
[ -n "$blob" ] || fail "$image" "the manifest for $platform has no layer titled ocidl"
size="$(descriptor_size "$tmp/manifest" "$title")"
if [ -z "$size" ] || [ "$size" -gt "$max_binary" ]; then
	fail "$image" "the manifest for $platform gives ocidl no size up to $max_binary bytes"
fi
get_authorized "$api/blobs/sha256:$blob" "$tmp/ocidl" application/octet-stream \
	"$size" "$time_binary" || fail "$image" "cannot download the binary for $platform: $why"
got="$(wc -c <"$tmp/ocidl" | tr -d ' ')"
[ "$got" = "$size" ] ||
	fail "$image" "the binary for $platform has $got bytes, its manifest says $size"
[ "$(sha256 "$tmp/ocidl")" = "$blob" ] ||
	fail "$image" "the binary for $platform does not match its sha256 (sha256:$blob)"

chmod 755 "$tmp/ocidl" || fail "$dir/ocidl" "cannot make it executable"
refuse_directory
mv -f "$tmp/ocidl" "$dir/ocidl" || fail "$dir/ocidl" "cannot rename it into place"
made=
echo "installed $dir/ocidl ($platform, sha256:$(echo "$blob" | cut -c1-12))"
case ":${PATH:-}:" in
*":$dir:"*) ;;
*) echo "note: $dir is not in PATH" ;;
esac
