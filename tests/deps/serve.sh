#!/bin/sh
# Debian packages the `detector serve` end-to-end tests need (tests/test_serve_dovecot.py):
# Dovecot's core and IMAP server. Idempotent; run by `make test` before pytest starts (never from
# test workers). Without root or apt the tests skip, naming the missing package.
set -u
PACKAGES="dovecot-core dovecot-imapd"
missing() {
    out=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
    done
    echo "$out"
}
todo=$(missing)
[ -z "$todo" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/deps/serve.sh: not root or no apt-get: the serve tests will skip (missing:$todo)" >&2
    exit 0
fi
echo "tests/deps/serve.sh: installing$todo" >&2
export DEBIAN_FRONTEND=noninteractive
# apt-get may fail on an unrelated half-configured package: what counts is what is installed after.
apt-get install -y -qq --no-install-recommends $todo >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq --no-install-recommends $todo >/dev/null 2>&1; }
left=$(missing)
[ -n "$left" ] && echo "tests/deps/serve.sh: could not install$left: the serve tests will skip" >&2
exit 0
