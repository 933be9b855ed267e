#!/bin/sh
# Installs what postlist's tests need when it is missing: Postfix (the
# end-to-end tests start a private instance of it) and sqlite3 (the admin
# queries in the README are tested with it). As root this uses apt-get;
# otherwise it says what to install and fails.
set -eu

missing=""
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing="$missing postfix"
command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "postlist tests need:$missing" >&2
	echo "install them with: sudo apt-get install$missing   (or run make test as root)" >&2
	exit 1
fi

echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Never start the system Postfix: the tests run their own private instance,
# and a system one would hold port 25.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	created_policy=1
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ -n "$created_policy" ] && rm -f "$policy"
exit 0
