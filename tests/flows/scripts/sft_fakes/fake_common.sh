# Sourced by every fake command of the SFT script tests. A fake records its call and its
# environment (so a test sees whether a secret reached either), and changes only the sandbox
# under $CLOUDOPS_ROOT, the way the real command would change the host.
root="${CLOUDOPS_ROOT:?fakes run only inside a test sandbox with CLOUDOPS_ROOT set}"
fake_name="${0##*/}"
printf '%s %s\n' "$fake_name" "$*" >>"${FAKE_CALLS_LOG:?FAKE_CALLS_LOG is not set}"
env >>"$FAKE_CALLS_LOG.environments"

pkgdb="$root/var/lib/fake-pkgdb"

# What installing the scaleft-server-tools package puts on a host: the daemon and its unit.
fake_install_agent() {
    local unit_dir="$1" format="$2"
    mkdir -p "$root/usr/sbin" "$unit_dir" "$pkgdb"
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/sftd"
    chmod 755 "$root/usr/sbin/sftd"
    printf '[Service]\nExecStart=/usr/sbin/sftd\n' >"$unit_dir/sftd.service"
    printf '%s\n' "$format" >"$pkgdb/scaleft-server-tools"
}
