#!/usr/bin/env bash
# The Debian packages the test suite drives for real (sshd, nginx, php-fpm, nft, Chromium).
# As root with apt-get: installs what is missing. Otherwise: says what to install and goes on
# (those tests then skip, or fail under PANEL_REQUIRE_REAL=1).
set -euo pipefail

# program that must exist : Debian package that provides it
NEEDS=(
  "/usr/sbin/sshd:openssh-server"
  "/usr/bin/ssh-keygen:openssh-client"
  "/usr/sbin/nginx:nginx"
  "/usr/sbin/php-fpm8.2:php8.2-fpm"
  "/usr/sbin/nft:nftables"
  "/usr/sbin/ip:iproute2"
  "/usr/bin/curl:curl"
  "/usr/bin/ps:procps"
  "/usr/sbin/useradd:passwd"
  "/usr/sbin/named:bind9"
  "/usr/sbin/rndc:bind9-utils"
  "/usr/sbin/pdns_server:pdns-server"
  "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql:pdns-backend-sqlite3"
  "/usr/bin/chromium:chromium"
  "/usr/bin/pebble:pebble"
  "/usr/bin/openssl:openssl"
  "/usr/share/fonts/truetype/dejavu:fonts-dejavu-core"
  "/usr/bin/prometheus-node-exporter:prometheus-node-exporter"
  "/usr/bin/fail2ban-server:fail2ban"
  "/usr/bin/ping:iputils-ping"
  "/usr/bin/supervisord:supervisor"
  # Mail: Postfix, Dovecot (IMAP, LMTP, POP3) and OpenDKIM (mail/).
  "/usr/sbin/postfix:postfix"
  "/usr/sbin/dovecot:dovecot-core"
  "/usr/lib/dovecot/imap:dovecot-imapd"
  "/usr/lib/dovecot/lmtp:dovecot-lmtpd"
  "/usr/lib/dovecot/pop3:dovecot-pop3d"
  "/usr/sbin/opendkim:opendkim"
  "/usr/sbin/opendkim-genkey:opendkim-tools"
  # Sieve (auto-responders) and ManageSieve in the configuration "Prepare for mail" writes.
  "/usr/lib/dovecot/modules/lib90_sieve_plugin.so:dovecot-sieve"
  "/usr/lib/dovecot/managesieve:dovecot-managesieved"
  "/usr/bin/node:nodejs"
  # Billing: WeasyPrint renders invoice PDFs with Pango (HarfBuzz subsetting for fonts).
  "/usr/lib/x86_64-linux-gnu/libpango-1.0.so.0:libpango-1.0-0"
  "/usr/lib/x86_64-linux-gnu/libpangoft2-1.0.so.0:libpangoft2-1.0-0"
  "/usr/lib/x86_64-linux-gnu/libharfbuzz-subset.so.0:libharfbuzz-subset0"
  # VPS: libvirt-python is built against libvirt's headers; a real libvirtd runs qemu (TCG).
  "/usr/include/libvirt/libvirt.h:libvirt-dev"
  "/usr/bin/pkg-config:pkg-config"
  "/usr/bin/gcc:gcc"
  "/usr/sbin/libvirtd:libvirt-daemon"
  "/usr/bin/virt-qemu-run:libvirt-daemon-driver-qemu"
  "/usr/bin/qemu-system-x86_64:qemu-system-x86"
  "/usr/bin/qemu-img:qemu-utils"
  "/usr/bin/xorriso:xorriso"
  # The console tests' tiny guest: an initramfs holding busybox, booting the kernel below.
  "/bin/busybox:busybox-static"
  # Backups: restic runs on the servers (and here, in the tests).
  "/usr/bin/restic:restic"
  # deploy/: the install scripts are checked with shellcheck, the units with systemd-analyze.
  "/usr/bin/shellcheck:shellcheck"
  "/usr/bin/systemd-analyze:systemd"
)

# The tiny guest boots Debian's cloud kernel. Only the file is taken from the package
# (nothing is installed into /boot); without it the VPS console tests skip.
GUEST_KERNEL=/var/cache/panel-tests/vmlinuz
guest_kernel() {
  [ -e "$GUEST_KERNEL" ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "deps: $GUEST_KERNEL is missing (as root, scripts/deps.sh downloads it)" >&2
    return 0
  fi
  local tmp pkg
  tmp=$(mktemp -d)
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  if [ -n "$pkg" ] && (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1); then
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    mkdir -p "$(dirname "$GUEST_KERNEL")"
    cp "$tmp"/x/boot/vmlinuz-* "$GUEST_KERNEL"
    echo "deps: guest kernel from $pkg in $GUEST_KERNEL"
  else
    echo "deps: could not download the guest kernel (linux-image-cloud-amd64)" >&2
  fi
  rm -rf "$tmp"
}

missing=()
for need in "${NEEDS[@]}"; do
  path="${need%%:*}" package="${need##*:}"
  [ -e "$path" ] || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: every program the tests drive is installed."
  guest_kernel
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps: done."
  guest_kernel
else
  cat >&2 <<MSG
deps: these Debian packages are missing: ${missing[*]}
      Install them (as root):  apt-get install --no-install-recommends ${missing[*]}
      Until then the integration and browser tests that need them are skipped
      (and fail when PANEL_REQUIRE_REAL=1, as in CI).
MSG
fi
